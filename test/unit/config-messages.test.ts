import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { buildGateway } from '../../src/app/build.ts';
import { ConfigError, parseEnv, parseSettingJson } from '../../src/config/env.ts';
import { findJsonSyntaxError } from '../../src/config/json-error.ts';
import { parseKeysFile } from '../../src/config/keys.ts';
import { parseRuntimeConfig } from '../../src/config/reload.ts';

/** What the gateway says about a bad setting or file: enough to fix it, never a secret. */

const KEY = 'AIzaSyB3xQ9-SECRETSECRETSECRETSECRET12';

function messageOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as Error).message;
  }
  throw new Error('expected a ConfigError');
}

describe('a keys file that is not JSON', () => {
  // Each of these made JSON.parse quote the text around the error, key included.
  const broken: Array<[string, string, RegExp]> = [
    ['a key without quotes', `{"keys": [\n  {"id": "k1", "api_key": ${KEY}}\n]}`, /line 2, column 27/],
    ['a missing comma', `{"keys": [\n  {"api_key": "${KEY}" "id": "k1"}\n]}`, /line 2, column \d+/],
    ['a cut-off file', `{"keys": [{"api_key": "${KEY}`, /unterminated string at line 1, column \d+/],
    ['a trailing comma', `{"keys": [{"api_key": "${KEY}"},]}`, /line 1, column \d+/],
    [
      'text after the value',
      `{"keys": []} ${KEY}`,
      /unexpected text after the JSON value at line 1, column 14/,
    ],
    ['a tab inside a string', `{"keys": [{"api_key": "${KEY}\t"}]}`, /control character/],
  ];
  for (const [name, text, where] of broken) {
    it(`${name}: the message gives the line and column and quotes none of the text`, () => {
      expect(() => JSON.parse(text)).toThrow(); // the premise
      const message = messageOf(() => parseKeysFile(text, 'API_KEYS_FILE', parseEnv({})));
      expect(message).toMatch(/^API_KEYS_FILE: not valid JSON: /);
      expect(message).toMatch(where);
      expect(message).not.toContain('AIza');
      expect(message).not.toContain('SECRET');
      expect(message).not.toContain('"');
    });
  }

  it("JSON.parse's own message would have quoted the key (why the scanner exists)", () => {
    let v8 = '';
    try {
      JSON.parse(`{"keys": [${KEY}]}`);
    } catch (err) {
      v8 = (err as Error).message;
    }
    expect(v8).toContain('AIza');
    expect(
      messageOf(() => parseSettingJson(`{"keys": [${KEY}]}`, 'API_KEYS_FILE', 'keys file', {} as never)),
    ).toBe('API_KEYS_FILE: not valid JSON: unexpected character at line 1, column 11');
  });

  it('CONFIG_FILE is reported the same way', () => {
    expect(messageOf(() => parseRuntimeConfig('{\n  "LOG_LEVEL": debug\n}'))).toBe(
      'CONFIG_FILE: not valid JSON: unexpected character at line 2, column 16',
    );
  });

  it('the scanner agrees with JSON.parse on valid text and finds the first error', () => {
    for (const ok of ['{}', '[]', ' {"a": [1, -2.5e3, true, false, null, "x\\u00e9\\n"]} ', '"s"', '0']) {
      expect(() => JSON.parse(ok)).not.toThrow();
      expect(findJsonSyntaxError(ok)).toBeNull();
    }
    expect(findJsonSyntaxError('')).toEqual({ reason: 'unexpected end of the text', line: 1, column: 1 });
    expect(findJsonSyntaxError('{"a": 01}')).toMatchObject({ line: 1, column: 8 });
    expect(findJsonSyntaxError('{"a": "\\x"}')).toMatchObject({
      reason: 'bad escape in a string',
      column: 9,
    });
    expect(findJsonSyntaxError('\n\n  {a: 1}')).toMatchObject({ line: 3, column: 4 });
    expect(findJsonSyntaxError('\uFEFF{}')).toMatchObject({ line: 1, column: 1 });
  });
});

describe('settings given with a unit', () => {
  it('REQUEST_TIMEOUT=10s says that seconds are expected', () => {
    const message = messageOf(() => parseEnv({ REQUEST_TIMEOUT: '10s' }));
    expect(message).toMatch(/REQUEST_TIMEOUT: expected a positive number of seconds/);
    expect(message).not.toMatch(/NaN/);
    expect(messageOf(() => parseEnv({ REQUEST_TIMEOUT: '0' }))).toMatch(/REQUEST_TIMEOUT: .*seconds/);
    expect(parseEnv({ REQUEST_TIMEOUT: '2.5' }).REQUEST_TIMEOUT).toBe(2.5);
  });
});

describe('ALLOW_ANONYMOUS', () => {
  async function startLines(env: Record<string, string>): Promise<Array<Record<string, unknown>>> {
    const lines: string[] = [];
    const logger = pino({ level: 'info' }, { write: (l: string) => void lines.push(l) });
    const gw = await buildGateway({ GEMINI_API_KEYS: 'AIza-anon-test-key', ...env }, { logger });
    await gw.close();
    return lines.map((l) => JSON.parse(l) as Record<string, unknown>);
  }

  it('in effect (no client tokens): a warn line at start says anyone can spend the pool', async () => {
    const lines = await startLines({ ALLOW_ANONYMOUS: 'true' });
    const warn = lines.find((l) => l.level === 40 && /ALLOW_ANONYMOUS/.test(String(l.msg)));
    expect(warn, JSON.stringify(lines)).toBeDefined();
    expect(String(warn!.msg)).toMatch(/anyone/i);
  });

  it('not in effect (client tokens set): no such warning', async () => {
    const lines = await startLines({ ALLOW_ANONYMOUS: 'true', CLIENT_API_KEYS_MAP: 'tok:name' });
    expect(lines.some((l) => /ALLOW_ANONYMOUS/.test(String(l.msg)))).toBe(false);
  });
});
