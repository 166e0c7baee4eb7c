import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';
import { parse, parseAllDocuments } from 'yaml';
import { envSchema, parseEnv } from '../../src/config/env.ts';
import { keysFileSchema } from '../../src/config/keys.ts';
import { parseRuntimeConfig } from '../../src/config/reload.ts';

/**
 * Every Kubernetes manifest under deploy/k8s, checked so that a typo fails here and not in a
 * cluster:
 *  - each document is validated against the Kubernetes OpenAPI schemas by the `kubernetes-models`
 *    classes' validate() (types, required fields, enums, formats), the ServiceMonitor against the
 *    Prometheus Operator CRD's schema (@kubernetes-models/prometheus-operator);
 *  - those schemas allow unknown fields (Kubernetes' own do), so each document is also type-checked
 *    by TypeScript against the same packages' interfaces, whose excess-property check rejects any
 *    field name that does not exist (`livenesProbe`, `redinessProbe`);
 *  - the kustomizations are rendered (a small renderer below for the features used here, compared
 *    with `kubectl kustomize` where kubectl is installed) and what they render is checked the same
 *    way, then against the gateway itself: settings names and values, probes, drain time,
 *    selectors, writable paths, and the Dockerfile and docker-compose.yml.
 */

const ROOT = resolve('deploy/k8s');
const OVERLAYS = ['single-redis', 'external-redis'];
// biome-ignore lint/suspicious/noExplicitAny: manifests are inspected dynamically
type Obj = Record<string, any>;

function yamlFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) return yamlFiles(p);
    return /\.ya?ml$/.test(name) ? [p] : [];
  });
}

function loadDocs(file: string): unknown[] {
  return parseAllDocuments(readFileSync(file, 'utf8')).map((d) => {
    if (d.errors.length > 0) throw new Error(`${relative(ROOT, file)}: ${d.errors[0]!.message}`);
    return d.toJS();
  });
}

/** Where each apiVersion's models live: the package path and the class and interface names. */
function modelModule(apiVersion: string, kind: string): string {
  if (apiVersion.startsWith('monitoring.coreos.com/'))
    return `@kubernetes-models/prometheus-operator/${apiVersion}/${kind}`;
  return `kubernetes-models/${apiVersion}/${kind}`;
}

async function schemaErrors(doc: Obj): Promise<string | null> {
  const where = `${doc.kind}/${doc.metadata?.name}`;
  let mod: Record<string, unknown>;
  try {
    mod = await import(modelModule(doc.apiVersion, doc.kind));
  } catch {
    return `${where}: no schema for apiVersion ${doc.apiVersion} kind ${doc.kind}`;
  }
  const Model = mod[doc.kind] as new (d: unknown) => { validate(): void };
  try {
    new Model(doc).validate();
    return null;
  } catch (err) {
    return `${where}: ${(err as Error).message}`;
  }
}

/**
 * TypeScript's excess-property check against the models' interfaces: one program for all
 * documents. `partial` documents (strategic-merge patches) are checked as deep partials.
 */
function fieldErrors(docs: { doc: Obj; label: string; partial?: boolean }[]): string[] {
  const file = resolve('test/unit/__k8s_manifest_fields__.ts');
  const lines = [
    'type DeepPartial<T> = T extends (infer U)[] ? DeepPartial<U>[] : T extends object ? { [K in keyof T]?: DeepPartial<T[K]> } : T;',
  ];
  docs.forEach(({ doc, partial }, i) => {
    const type = `import('${modelModule(doc.apiVersion, doc.kind)}').I${doc.kind}`;
    lines.push(`export const d${i}: ${partial ? `DeepPartial<${type}>` : type} = ${JSON.stringify(doc)};`);
  });
  const source = lines.join('\n');
  const options: ts.CompilerOptions = {
    strict: true,
    noEmit: true,
    skipLibCheck: true,
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    types: [],
  };
  const host = ts.createCompilerHost(options);
  const getSourceFile = host.getSourceFile.bind(host);
  host.getSourceFile = (name, lang, ...rest) =>
    resolve(name) === file ? ts.createSourceFile(name, source, lang) : getSourceFile(name, lang, ...rest);
  const fileExists = host.fileExists.bind(host);
  host.fileExists = (name) => resolve(name) === file || fileExists(name);
  const program = ts.createProgram([file], options, host);
  return ts.getPreEmitDiagnostics(program).map((d) => {
    const line = d.file && d.start !== undefined ? d.file.getLineAndCharacterOfPosition(d.start).line : -1;
    const label = line >= 1 ? docs[line - 1]?.label : '?';
    return `${label}: ${ts.flattenDiagnosticMessageText(d.messageText, '\n')}`;
  });
}

// --- a small kustomize: resources (files and directories), namespace, patches (strategic merge
// of maps, JSON 6902). Anything else in a kustomization.yaml fails the test: extend this first.
const KUSTOMIZATION_FIELDS = new Set(['apiVersion', 'kind', 'namespace', 'resources', 'patches']);
const CLUSTER_SCOPED = new Set(['Namespace']);

function mergeMaps(target: Obj, patch: Obj, where: string): void {
  for (const [k, v] of Object.entries(patch)) {
    if (Array.isArray(v))
      throw new Error(`${where}: list ${k} in a strategic-merge patch (use a JSON 6902 patch)`);
    if (v && typeof v === 'object' && target[k] && typeof target[k] === 'object')
      mergeMaps(target[k], v, where);
    else target[k] = v;
  }
}

function applyJson6902(target: Obj, ops: Obj[], where: string): void {
  for (const op of ops) {
    const parts = String(op.path)
      .split('/')
      .slice(1)
      .map((p) => p.replace(/~1/g, '/').replace(/~0/g, '~'));
    const last = parts.pop()!;
    let parent: Obj = target;
    for (const p of parts) {
      parent = parent[p];
      if (parent === undefined) throw new Error(`${where}: ${op.path} does not exist`);
    }
    if (op.op === 'add' || op.op === 'replace') {
      if (op.op === 'replace' && !(last in parent)) throw new Error(`${where}: ${op.path} does not exist`);
      if (Array.isArray(parent) && op.op === 'add')
        parent.splice(last === '-' ? parent.length : Number(last), 0, op.value);
      else (parent as Obj)[last] = op.value;
    } else if (op.op === 'remove') {
      if (!(last in parent)) throw new Error(`${where}: ${op.path} does not exist`);
      if (Array.isArray(parent)) parent.splice(Number(last), 1);
      else delete (parent as Obj)[last];
    } else throw new Error(`${where}: JSON patch op ${op.op} not supported by the test renderer`);
  }
}

interface Kustomization {
  dir: string;
  resources: string[];
  patches: { path: string; target?: { kind?: string; name?: string } }[];
  namespace?: string;
}

function readKustomization(dir: string): Kustomization {
  const k = parse(readFileSync(join(dir, 'kustomization.yaml'), 'utf8')) as Obj;
  const unknown = Object.keys(k).filter((f) => !KUSTOMIZATION_FIELDS.has(f));
  if (unknown.length > 0)
    throw new Error(
      `${relative(ROOT, dir)}/kustomization.yaml: ${unknown.join(', ')} not supported by the test renderer`,
    );
  return { dir, resources: k.resources ?? [], patches: k.patches ?? [], namespace: k.namespace };
}

function render(dir: string): Obj[] {
  const k = readKustomization(dir);
  const docs: Obj[] = [];
  for (const r of k.resources) {
    const p = resolve(dir, r);
    if (statSync(p).isDirectory()) docs.push(...render(p));
    else docs.push(...(loadDocs(p) as Obj[]));
  }
  for (const patch of k.patches) {
    const where = relative(ROOT, resolve(dir, patch.path));
    const content = loadDocs(resolve(dir, patch.path));
    if (Array.isArray(content[0])) {
      const targets = docs.filter(
        (d) => d.kind === patch.target?.kind && d.metadata?.name === patch.target?.name,
      );
      if (targets.length !== 1) throw new Error(`${where}: target ${JSON.stringify(patch.target)} not found`);
      applyJson6902(targets[0]!, content[0] as Obj[], where);
    } else {
      for (const p of content as Obj[]) {
        const target = docs.find((d) => d.kind === p.kind && d.metadata?.name === p.metadata?.name);
        if (!target) throw new Error(`${where}: no ${p.kind}/${p.metadata?.name} to patch`);
        mergeMaps(target, p, where);
      }
    }
  }
  if (k.namespace)
    for (const d of docs)
      if (!CLUSTER_SCOPED.has(d.kind)) d.metadata = { ...d.metadata, namespace: k.namespace };
  return docs;
}

function find(docs: Obj[], kind: string, name: string): Obj {
  const d = docs.find((x) => x.kind === kind && x.metadata?.name === name);
  if (!d) throw new Error(`${kind}/${name} not rendered`);
  return d;
}

const hasKubectl = spawnSync('sh', ['-c', 'command -v kubectl']).status === 0;
// Rendered once; a kustomization that cannot be rendered fails the tests that need it, by name.
const rendered = new Map<string, Obj[]>();
let renderError: Error | undefined;
try {
  for (const o of OVERLAYS) rendered.set(o, render(join(ROOT, 'overlays', o)));
} catch (err) {
  renderError = err as Error;
}
const rendersOrFails = (): boolean => {
  if (!renderError) return true;
  it('renders', () => {
    throw renderError;
  });
  return false;
};
const secretsExample = loadDocs(join(ROOT, 'secrets.example.yaml')) as Obj[];

describe('deploy/k8s files', () => {
  const kustomizations = yamlFiles(ROOT).filter((f) => f.endsWith('kustomization.yaml'));

  it('every file a kustomization names exists, and every manifest is named by one (or is the secrets example)', () => {
    const named = new Set<string>();
    for (const file of kustomizations) {
      const k = readKustomization(dirname(file));
      for (const r of k.resources) {
        const p = resolve(k.dir, r);
        let st: ReturnType<typeof statSync>;
        try {
          st = statSync(p);
        } catch {
          throw new Error(`${relative(ROOT, file)}: resource ${r} does not exist`);
        }
        if (st.isDirectory())
          expect(
            () => statSync(join(p, 'kustomization.yaml')),
            `${r} has no kustomization.yaml`,
          ).not.toThrow();
        else named.add(p);
      }
      for (const patch of k.patches) {
        expect(
          () => statSync(resolve(k.dir, patch.path)),
          `${relative(ROOT, file)}: ${patch.path}`,
        ).not.toThrow();
        named.add(resolve(k.dir, patch.path));
      }
    }
    const orphans = yamlFiles(ROOT).filter(
      (f) => !f.endsWith('kustomization.yaml') && !named.has(f) && !f.endsWith('secrets.example.yaml'),
    );
    expect(orphans.map((f) => relative(ROOT, f))).toEqual([]);
    expect(kustomizations.map((f) => relative(ROOT, f)).sort()).toEqual(
      ['base/kustomization.yaml', ...OVERLAYS.map((o) => `overlays/${o}/kustomization.yaml`)].sort(),
    );
  });

  rendersOrFails();

  it('every resource document, rendered or not, validates against the Kubernetes (and Prometheus Operator) schemas', async () => {
    const docs = [...[...rendered.values()].flat(), ...secretsExample];
    expect(docs.length).toBeGreaterThan(10);
    const errors = (await Promise.all(docs.map(schemaErrors))).filter(Boolean);
    expect(errors).toEqual([]);
  });

  it('no document has a field its schema does not define (TypeScript excess-property check)', () => {
    const docs: { doc: Obj; label: string; partial?: boolean }[] = [];
    for (const [overlay, list] of rendered)
      for (const doc of list) docs.push({ doc, label: `${overlay}: ${doc.kind}/${doc.metadata?.name}` });
    for (const doc of secretsExample)
      docs.push({ doc, label: `secrets.example.yaml: ${doc.metadata?.name}` });
    // Strategic-merge patches, as written.
    for (const file of yamlFiles(ROOT).filter((f) => f.endsWith('-patch.yaml')))
      for (const doc of loadDocs(file))
        if (!Array.isArray(doc)) docs.push({ doc: doc as Obj, label: relative(ROOT, file), partial: true });
    expect(fieldErrors(docs)).toEqual([]);
  });

  it('the checks above do catch typos: a misspelled field and a wrong type', async () => {
    const deployment = structuredClone(find(rendered.get('single-redis')!, 'Deployment', 'gemini-gateway'));
    const container = deployment.spec.template.spec.containers[0];
    container.livenesProbe = container.livenessProbe;
    const misspelled = fieldErrors([{ doc: deployment, label: 'typo' }]);
    expect(misspelled.join('\n')).toMatch(/livenesProbe/);
    const wrongType = structuredClone(find(rendered.get('single-redis')!, 'Deployment', 'gemini-gateway'));
    wrongType.spec.template.spec.containers[0].ports[0].containerPort = '8000';
    expect(await schemaErrors(wrongType)).toMatch(/containerPort must be integer/);
    const monitor = structuredClone(find(rendered.get('single-redis')!, 'ServiceMonitor', 'gemini-gateway'));
    monitor.spec.endpoints[0].interval = 'every 30 seconds';
    expect(await schemaErrors(monitor)).toMatch(/interval/);
  });

  it('the test renderer agrees with `kubectl kustomize` (where kubectl is installed)', () => {
    if (!hasKubectl) {
      console.warn('kubectl is not installed: the rendering was not compared with `kubectl kustomize`');
      return;
    }
    for (const overlay of OVERLAYS) {
      const out = spawnSync('kubectl', ['kustomize', join(ROOT, 'overlays', overlay)], { encoding: 'utf8' });
      expect(out.status, out.stderr).toBe(0);
      const key = (d: Obj) => `${d.kind}/${d.metadata?.name}`;
      const real = parseAllDocuments(out.stdout).map((d) => d.toJS() as Obj);
      const ours = rendered.get(overlay)!;
      expect(real.map(key).sort()).toEqual(ours.map(key).sort());
      for (const d of real)
        expect(
          ours.find((o) => key(o) === key(d)),
          key(d),
        ).toEqual(d);
    }
  });
});

describe.each(OVERLAYS)('overlay %s, rendered, against the gateway', (overlay) => {
  if (!rendersOrFails()) return;
  const docs = rendered.get(overlay)!;
  const deployment = find(docs, 'Deployment', 'gemini-gateway');
  const pod = deployment.spec.template.spec;
  const gateway = pod.containers.find((c: Obj) => c.name === 'gateway');
  const config = find(docs, 'ConfigMap', 'gemini-gateway-config').data as Record<string, string>;
  const envSecret = secretsExample.find((s) => s.metadata.name === 'gemini-gateway-env')!;
  const keysSecret = secretsExample.find((s) => s.metadata.name === 'gemini-gateway-keys')!;

  it('the ConfigMap holds only settings the gateway knows, and with the secrets they parse', () => {
    const known = new Set(Object.keys(envSchema.shape));
    expect(Object.keys(config).filter((k) => !known.has(k))).toEqual([]);
    expect(Object.keys(envSecret.stringData).filter((k) => !known.has(k))).toEqual([]);
    const env = parseEnv({
      ...config,
      ...envSecret.stringData,
      REDIS_URL: config.REDIS_URL ?? 'rediss://r:6380/0',
    });
    expect(env.PORT).toBe(8000);
    const runtime = find(docs, 'ConfigMap', 'gemini-gateway-runtime').data['runtime.json'];
    expect(() => parseRuntimeConfig(runtime)).not.toThrow();
    expect(() => keysFileSchema.parse(JSON.parse(keysSecret.stringData['api_keys.json']))).not.toThrow();
  });

  it('reads its settings from the ConfigMap and the env Secret, the Secret winning', () => {
    expect(gateway.envFrom).toEqual([
      { configMapRef: { name: 'gemini-gateway-config' } },
      { secretRef: { name: 'gemini-gateway-env' } },
    ]);
  });

  it('has a Redis: in the cluster (the URL names its Service) or from the Secret (required)', () => {
    if (overlay === 'single-redis') {
      const url = new URL(config.REDIS_URL!);
      const svc = find(docs, 'Service', url.hostname);
      expect(svc.spec.ports.map((p: Obj) => p.port)).toContain(Number(url.port));
      const sts = find(docs, 'StatefulSet', 'gemini-gateway-redis');
      expect(find(docs, 'Service', sts.spec.serviceName).spec.clusterIP).toBe('None');
      for (const s of [svc, find(docs, 'NetworkPolicy', 'gemini-gateway-redis')]) {
        const selector = s.spec.selector ?? s.spec.podSelector.matchLabels;
        expect(sts.spec.template.metadata.labels).toMatchObject(selector);
      }
      expect(sts.spec.template.spec.containers[0].args).toEqual(
        expect.arrayContaining(['--maxmemory-policy', 'noeviction', '--appendonly']),
      );
    } else {
      expect(config.REDIS_URL).toBeUndefined();
      expect(gateway.env).toContainEqual({
        name: 'REDIS_URL',
        valueFrom: { secretKeyRef: { name: 'gemini-gateway-env', key: 'REDIS_URL' } },
      });
    }
  });

  it('probes: liveness /health, readiness /health/detailed, on the port the gateway listens on', () => {
    const port = gateway.ports.find((p: Obj) => p.name === 'http');
    expect(port.containerPort).toBe(Number(config.PORT));
    expect(gateway.livenessProbe.httpGet).toEqual({ path: '/health', port: 'http' });
    expect(gateway.startupProbe.httpGet).toEqual({ path: '/health', port: 'http' });
    expect(gateway.readinessProbe.httpGet).toEqual({ path: '/health/detailed', port: 'http' });
  });

  it('terminationGracePeriodSeconds is above preStop + the drain time + the last-resort margin', () => {
    const preStop = gateway.lifecycle.preStop.exec.command as string[];
    expect(preStop[0]).toBe('sleep');
    const drainMs = parseEnv({ ...config, ...envSecret.stringData }).SHUTDOWN_TIMEOUT_MS;
    // src/main.ts: forced close at SHUTDOWN_TIMEOUT_MS, process.exit 5 s later at the latest.
    expect(pod.terminationGracePeriodSeconds).toBeGreaterThan(Number(preStop[1]) + drainMs / 1000 + 5);
  });

  it('runs non-root on a read-only root filesystem; every path it writes is a writable volume', () => {
    const restricted = (spec: Obj) => {
      expect(spec.securityContext.runAsNonRoot).toBe(true);
      expect(spec.securityContext.runAsUser).toBeGreaterThan(0);
      expect(spec.securityContext.seccompProfile.type).toBe('RuntimeDefault');
      expect(spec.automountServiceAccountToken).toBe(false);
      for (const c of spec.containers) {
        expect(c.securityContext).toMatchObject({
          allowPrivilegeEscalation: false,
          readOnlyRootFilesystem: true,
          capabilities: { drop: ['ALL'] },
        });
      }
    };
    restricted(pod);
    for (const sts of docs.filter((d) => d.kind === 'StatefulSet')) restricted(sts.spec.template.spec);
    const volume = (path: string) => {
      const m = gateway.volumeMounts.find(
        (v: Obj) => path === v.mountPath || path.startsWith(`${v.mountPath}/`),
      );
      return m && { mount: m, volume: pod.volumes.find((v: Obj) => v.name === m.name) };
    };
    for (const dir of [config.MEDIA_DIR!, '/tmp']) {
      const v = volume(dir);
      expect(v?.volume.emptyDir, dir).toBeDefined();
      expect(v?.mount.readOnly).toBeUndefined();
    }
    const keys = volume(config.API_KEYS_FILE!);
    expect(keys?.volume.secret.secretName).toBe('gemini-gateway-keys');
    expect(config.API_KEYS_FILE!.slice(keys!.mount.mountPath.length + 1)).toBe('api_keys.json');
    expect(keys?.mount.subPath).toBeUndefined(); // subPath mounts never see Secret updates
    const runtime = volume(config.CONFIG_FILE!);
    expect(runtime?.volume.configMap.name).toBe('gemini-gateway-runtime');
    expect(runtime?.mount.subPath).toBeUndefined();
  });

  it('Service, PodDisruptionBudget, HorizontalPodAutoscaler and ServiceMonitor select the gateway', () => {
    const labels = deployment.spec.template.metadata.labels;
    expect(labels).toMatchObject(deployment.spec.selector.matchLabels);
    const service = find(docs, 'Service', 'gemini-gateway');
    expect(labels).toMatchObject(service.spec.selector);
    expect(service.spec.ports[0].targetPort).toBe('http');
    expect(labels).toMatchObject(
      find(docs, 'PodDisruptionBudget', 'gemini-gateway').spec.selector.matchLabels,
    );
    const hpa = find(docs, 'HorizontalPodAutoscaler', 'gemini-gateway');
    expect(hpa.spec.scaleTargetRef).toEqual({
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      name: 'gemini-gateway',
    });
    expect(hpa.spec.minReplicas).toBeGreaterThanOrEqual(2);
    expect(deployment.spec.replicas).toBeUndefined(); // the HPA owns it
    const monitor = find(docs, 'ServiceMonitor', 'gemini-gateway');
    expect(service.metadata.labels).toMatchObject(monitor.spec.selector.matchLabels);
    const endpoint = monitor.spec.endpoints[0];
    expect(service.spec.ports.map((p: Obj) => p.name)).toContain(endpoint.port);
    expect(endpoint.path).toBe('/metrics');
    expect(endpoint.authorization.credentials).toEqual({ name: 'gemini-gateway-env', key: 'METRICS_TOKEN' });
    expect(envSecret.stringData.METRICS_TOKEN).toBeTruthy();
  });

  it('every namespaced object lands in the namespace, which enforces the restricted pod security level', () => {
    const ns = docs.find((d) => d.kind === 'Namespace')!;
    expect(ns.metadata.labels['pod-security.kubernetes.io/enforce']).toBe('restricted');
    for (const d of docs.filter((x) => x.kind !== 'Namespace'))
      expect(d.metadata.namespace).toBe(ns.metadata.name);
  });
});

describe('Dockerfile and docker-compose.yml agree with the manifests and the gateway', () => {
  if (!rendersOrFails()) return;
  const dockerfile = readFileSync('Dockerfile', 'utf8');
  const runtimeStage = dockerfile.slice(dockerfile.lastIndexOf('\nFROM '));
  const compose = parse(readFileSync('docker-compose.yml', 'utf8'), { merge: true }) as Obj;
  const nginxConf = readFileSync('deploy/nginx/gateway.conf', 'utf8');
  const docs = rendered.get('single-redis')!;
  const pod = find(docs, 'Deployment', 'gemini-gateway').spec.template.spec;
  const config = find(docs, 'ConfigMap', 'gemini-gateway-config').data as Record<string, string>;
  const gateways = Object.entries(compose.services as Record<string, Obj>).filter(([, s]) => s.build === '.');

  it('the image runs as the user, on the port and with the health check the manifests expect', () => {
    const user = /^USER (\d+):(\d+)$/m.exec(runtimeStage);
    expect(user, 'numeric USER (Kubernetes runAsNonRoot checks it)').not.toBeNull();
    expect(Number(user![1])).toBe(pod.securityContext.runAsUser);
    expect(Number(user![2])).toBe(pod.securityContext.runAsGroup);
    expect(/^EXPOSE (\d+)$/m.exec(runtimeStage)?.[1]).toBe(config.PORT);
    expect(/^ENV PORT=(\d+)/m.exec(runtimeStage)?.[1]).toBe(config.PORT);
    expect(/^HEALTHCHECK[\s\S]*?\/health'/m.test(runtimeStage)).toBe(true);
    expect(runtimeStage).toContain(`MEDIA_DIR=${config.MEDIA_DIR}`);
    expect(runtimeStage).toMatch(new RegExp(`mkdir -p [^\\n]*${config.MEDIA_DIR}`));
    expect(runtimeStage).toMatch(/^CMD \["node", "dist\/main\.js"\]$/m);
  });

  it('compose runs two gateways with known settings, behind the nginx site the tests run', () => {
    expect(gateways.map(([name]) => name).sort()).toEqual(['gateway-1', 'gateway-2']);
    const known = new Set(Object.keys(envSchema.shape));
    for (const [name, s] of gateways) {
      expect(
        Object.keys(s.environment).filter((k) => !known.has(k)),
        name,
      ).toEqual([]);
      expect(() => parseEnv({ ...s.environment, GEMINI_API_KEYS: 'k' })).not.toThrow();
      expect(s.environment.REDIS_URL).toMatch(/^redis:\/\/redis:6379\//);
      expect(s.environment.MEDIA_DIR).toBe(config.MEDIA_DIR);
      // stop_grace_period above the drain time and the gateway's 5 s margin
      const drain = parseEnv({ ...s.environment, GEMINI_API_KEYS: 'k' }).SHUTDOWN_TIMEOUT_MS / 1000;
      expect(Number.parseInt(s.stop_grace_period, 10)).toBeGreaterThan(drain + 5);
      expect(s.read_only).toBe(true);
      expect(s.tmpfs).toContain('/tmp');
      expect(s.volumes).toContain(`media:${config.MEDIA_DIR}`);
    }
    // nginx's upstream lists exactly these services on the gateway's port.
    const upstream = /^upstream gemini_gateway \{([\s\S]*?)^\}/m.exec(nginxConf)![1]!;
    const servers = [...upstream.matchAll(/^\s*server\s+([\w.-]+):(\d+)/gm)].map((m) => `${m[1]}:${m[2]}`);
    expect(servers.sort()).toEqual(gateways.map(([name, s]) => `${name}:${s.environment.PORT}`).sort());
    const nginx = compose.services.nginx as Obj;
    const mounts = (nginx.volumes as string[]).map((v) => v.split(':'));
    expect(mounts).toContainEqual(['./deploy/nginx/gateway.conf', '/etc/nginx/conf.d/default.conf', 'ro']);
    // The certificate paths the site names are mounted.
    for (const path of [...nginxConf.matchAll(/^\s*ssl_certificate(?:_key)?\s+(\S+);/gm)].map((m) => m[1]!))
      expect(
        mounts.some(([, target]) => path.startsWith(`${target}/`) || path === target),
        path,
      ).toBe(true);
  });
});
