import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { ResponseScrubber } from '../../src/upstream/response-scrub.ts';

/** Google-style keys: "AIza" and 35 URL-safe base64 characters. */
function googleKeys(n: number): string[] {
  return Array.from({ length: n }, () => `AIza${randomBytes(27).toString('base64url').slice(0, 35)}`);
}

const TOKEN = 'client-token-0123456789';

describe('ResponseScrubber', () => {
  it('replaces every pool key and client token in a body, and hands a clean body back as it is', () => {
    const keys = googleKeys(1000);
    const s = new ResponseScrubber([...keys, TOKEN]);
    const clean = Buffer.from(
      '{"candidates":[{"content":{"parts":[{"text":"AIza is a prefix, not a key"}]}}]}',
    );
    expect(s.scrub(clean)).toBe(clean);

    const body = Buffer.from(
      `{"error":{"code":400,"message":"key ${keys[517]} and ${keys[3]}${keys[999]}; token ${TOKEN}."}}`,
    );
    const out = s.scrub(body).toString();
    expect(out).toBe(
      '{"error":{"code":400,"message":"key [REDACTED] and [REDACTED][REDACTED]; token [REDACTED]."}}',
    );
    // A string that only looks like a key (same prefix and alphabet) stays.
    const lookalike = `AIza${'x'.repeat(35)}`;
    expect(s.scrub(Buffer.from(lookalike)).toString()).toBe(lookalike);
    // 1,000 keys of one prefix and one token: two Buffer.indexOf searches per body.
    expect(s.anchorCount).toBe(2);
  });

  it('finds a secret in its JSON-escaped and URL-encoded forms', () => {
    const odd = 'tok"en/with\\odd&chars';
    const s = new ResponseScrubber([odd]);
    const json = Buffer.from(JSON.stringify({ message: `got ${odd}` }));
    expect(s.scrub(json).toString()).toBe('{"message":"got [REDACTED]"}');
    const url = Buffer.from(`https://example.com/?key=${encodeURIComponent(odd)}&x=1`);
    expect(s.scrub(url).toString()).toBe('https://example.com/?key=[REDACTED]&x=1');
  });

  it('replaces the longest of secrets that begin alike, and overlapping ones together', () => {
    const s = new ResponseScrubber(['abcdefgh', 'abcdefghijkl', 'ghijklmnop']);
    expect(s.scrub(Buffer.from('<abcdefghijkl>')).toString()).toBe('<[REDACTED]>');
    expect(s.scrub(Buffer.from('<abcdefgh>')).toString()).toBe('<[REDACTED]>');
    // "abcdefgh" then "ghijklmnop" overlapping it: nothing of either is left.
    expect(s.scrub(Buffer.from('<abcdefghijklmnop>')).toString()).toBe('<[REDACTED]>');
  });

  it('with many distinct prefixes (many unrelated tokens) scans once and finds them all', () => {
    const tokens = Array.from({ length: 500 }, () => randomBytes(12).toString('hex'));
    const s = new ResponseScrubber(tokens);
    expect(s.anchorCount).toBeGreaterThan(8);
    const clean = Buffer.from('x'.repeat(2000));
    expect(s.scrub(clean)).toBe(clean);
    const body = Buffer.from(`[${tokens[0]}] ${tokens[250]}, ${tokens[499]}`);
    expect(s.scrub(body).toString()).toBe('[[REDACTED]] [REDACTED], [REDACTED]');
  });

  it('ignores secrets shorter than 8 characters and works with none at all', () => {
    const body = Buffer.from('a short secret: abc');
    expect(new ResponseScrubber(['abc']).scrub(body)).toBe(body);
    expect(new ResponseScrubber().scrub(body)).toBe(body);
    expect(new ResponseScrubber().stream().push(body)).toBe(body);
  });

  it('takes new secrets on set(), and scrubs header values', () => {
    const [a, b] = googleKeys(2);
    const s = new ResponseScrubber([a!]);
    expect(s.scrubText(`x ${b}`)).toBe(`x ${b}`);
    s.set([a!, b!]);
    expect(s.scrubText(`x ${b}`)).toBe('x [REDACTED]');
    expect(s.scrubText('application/json; charset=UTF-8')).toBe('application/json; charset=UTF-8');
  });
});

describe('StreamScrub', () => {
  const [key] = googleKeys(1);
  const secrets = [key!, TOKEN];

  it('finds a key cut in two at any byte by a chunk boundary', () => {
    const whole = `data: {"text":"your key is ${key}, bye"}\r\n\r\n`;
    const expected = whole.replace(key!, '[REDACTED]');
    for (let cut = 1; cut < whole.length; cut++) {
      const stream = new ResponseScrubber(secrets).stream();
      const out = [
        stream.push(Buffer.from(whole.slice(0, cut))),
        stream.push(Buffer.from(whole.slice(cut))),
        stream.end(),
      ];
      expect(Buffer.concat(out).toString(), `cut at ${cut}`).toBe(expected);
    }
  });

  it('finds a client token cut across three chunks', () => {
    const whole = `[{"text":"${TOKEN}"}]`;
    const stream = new ResponseScrubber(secrets).stream();
    const at = whole.indexOf(TOKEN);
    const parts = [whole.slice(0, at + 3), whole.slice(at + 3, at + 10), whole.slice(at + 10)];
    const out = Buffer.concat([...parts.map((p) => stream.push(Buffer.from(p))), stream.end()]);
    expect(out.toString()).toBe('[{"text":"[REDACTED]"}]');
  });

  it('passes a chunk that ends at a line break on whole, and holds back only a trailing key-like run', () => {
    const stream = new ResponseScrubber(secrets).stream();
    const event = Buffer.from('data: {"text":"hello"}\r\n\r\n');
    expect(stream.push(event)).toBe(event);
    // Ends inside a word whose letters all occur in the secrets: it may be the start of one.
    expect(stream.push(Buffer.from('data: {"text":"hello tic')).toString()).toBe('data: {"text":"hello ');
    expect(stream.push(Buffer.from('k"}\r\n\r\n')).toString()).toBe('tick"}\r\n\r\n');
    expect(stream.end().length).toBe(0);
    // What is held back at the very end goes out at end().
    expect(stream.push(Buffer.from('[{"a":1},{"b":"tock')).toString()).toBe('[{"a":1},{"b":"');
    expect(stream.end().toString()).toBe('tock');
  });
});
