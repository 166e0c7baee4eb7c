import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { connect } from 'node:tls';
import { freePort } from '../../src/util/free-port.ts';
import { has } from './global-setup.ts';

/**
 * Test TLS material (test/fixtures/tls): a server certificate for `images.test` signed by a test
 * CA. Clients connect to 127.0.0.1 with `servername: TLS_SERVERNAME` and trust `TLS_CA`.
 */
export const TLS_SERVERNAME = 'images.test';
export const TLS_CA = readFileSync(resolve('test/fixtures/tls/ca.crt'));
const TLS_CERT = resolve('test/fixtures/tls/images.test.crt');
const TLS_KEY = resolve('test/fixtures/tls/images.test.key');

export interface Nginx {
  /** https://127.0.0.1:<port> (TLS with the test certificate). */
  url: string;
  /** http://127.0.0.1:<port> (the plain-HTTP server: redirects). */
  httpUrl: string;
  httpsPort: number;
  /** The JSON access log's lines so far, parsed. */
  accessLog(): Record<string, unknown>[];
  /** nginx's error log so far. */
  errorLog(): string;
  close(): Promise<void>;
}

export function hasNginx(): boolean {
  return has('nginx');
}

/**
 * The shipped site configuration with only what a test must change: the upstream's servers
 * (every `server host:port params;` line of the upstream block becomes one line per port, with
 * the first line's parameters), the listen addresses, the certificate paths and the access log.
 * Throws if one of those is not found, so a change to the file cannot silently escape the test.
 */
export function adaptConf(
  conf: string,
  o: { upstreamPorts: number[]; httpPort: number; httpsPort: number; accessLog: string },
): string {
  const must = (re: RegExp, what: string) => {
    if (!re.test(conf)) throw new Error(`deploy/nginx/gateway.conf: ${what} not found`);
  };
  must(/^upstream gemini_gateway \{[\s\S]*?^\}/m, 'upstream gemini_gateway');
  must(/listen 80 default_server;/, 'listen 80 default_server');
  must(/listen 443 ssl http2 default_server;/, 'listen 443 ssl http2 default_server');
  must(/ssl_certificate\s+\S+;/, 'ssl_certificate');
  must(/ssl_certificate_key\s+\S+;/, 'ssl_certificate_key');
  must(/access_log \S+ gateway_json;/, 'access_log ... gateway_json');
  return conf
    .replace(/^upstream gemini_gateway \{[\s\S]*?^\}/m, (block) => {
      const servers = [...block.matchAll(/^(\s*)server\s+[\w.-]+:\d+([^;]*);\n/gm)];
      if (servers.length === 0) throw new Error('deploy/nginx/gateway.conf: no upstream server lines');
      const [, indent, params] = servers[0]!;
      const lines = o.upstreamPorts.map((p) => `${indent}server 127.0.0.1:${p}${params};\n`).join('');
      let out = block.replace(servers[0]![0], lines);
      for (const s of servers.slice(1)) out = out.replace(s[0], '');
      return out;
    })
    .replace('listen 80 default_server;', `listen 127.0.0.1:${o.httpPort} default_server;`)
    .replace(
      'listen 443 ssl http2 default_server;',
      `listen 127.0.0.1:${o.httpsPort} ssl http2 default_server;`,
    )
    .replace(/ssl_certificate\s+\S+;/, `ssl_certificate ${TLS_CERT};`)
    .replace(/ssl_certificate_key\s+\S+;/, `ssl_certificate_key ${TLS_KEY};`)
    .replace(/access_log \S+ gateway_json;/, `access_log ${o.accessLog} gateway_json;`);
}

/**
 * A real nginx (Debian package) in the foreground running deploy/nginx/gateway.conf (included in
 * http {} as the nginx image does), in front of the gateway instances on `upstreamPorts`.
 * Everything it writes goes to a temp dir.
 */
export async function startNginx(upstreamPorts: number[], siteConf: string): Promise<Nginx> {
  const dir = mkdtempSync(join(tmpdir(), 'gg-nginx-'));
  const httpPort = await freePort();
  const httpsPort = await freePort();
  const accessLog = join(dir, 'access.log');
  writeFileSync(
    join(dir, 'gateway.conf'),
    adaptConf(siteConf, { upstreamPorts, httpPort, httpsPort, accessLog }),
  );
  writeFileSync(
    join(dir, 'nginx.conf'),
    `daemon off;
master_process off;
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log info;
events { worker_connections 1024; }
http {
  include /etc/nginx/mime.types;
  default_type application/octet-stream;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  include ${dir}/gateway.conf;
}
`,
  );
  const errorLog = () => {
    try {
      return readFileSync(join(dir, 'error.log'), 'utf8');
    } catch {
      return '';
    }
  };
  let exited = false;
  const child: ChildProcess = spawn('nginx', ['-p', dir, '-c', join(dir, 'nginx.conf')], { stdio: 'ignore' });
  child.once('exit', () => {
    exited = true;
  });
  const deadline = Date.now() + 10_000;
  for (;;) {
    if (exited) throw new Error(`nginx exited at start:\n${errorLog()}`);
    const up = await new Promise<boolean>((done) => {
      const s = connect(
        { host: '127.0.0.1', port: httpsPort, servername: TLS_SERVERNAME, ca: TLS_CA },
        () => {
          s.end();
          done(true);
        },
      );
      s.once('error', () => done(false));
    });
    if (up) break;
    if (Date.now() > deadline) throw new Error(`nginx did not start:\n${errorLog()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    url: `https://127.0.0.1:${httpsPort}`,
    httpUrl: `http://127.0.0.1:${httpPort}`,
    httpsPort,
    accessLog() {
      if (!existsSync(accessLog)) return [];
      return readFileSync(accessLog, 'utf8')
        .split('\n')
        .filter(Boolean)
        .map((line) => JSON.parse(line) as Record<string, unknown>);
    },
    errorLog,
    async close() {
      if (!exited) {
        child.kill('SIGTERM');
        await new Promise((r) => child.once('exit', r));
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
