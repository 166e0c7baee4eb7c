import { describe, expect, it } from 'vitest';
import { StreamUsageReader } from '../../src/pool/estimate.ts';

function frame(prompt: number, text = 'some text'): string {
  return `data: {"candidates":[{"content":{"parts":[{"text":"${text}"}]}}],"usageMetadata":{"promptTokenCount": ${prompt},"candidatesTokenCount":3}}\r\n\r\n`;
}

function read(chunks: string[]): Array<number | undefined> {
  const reader = new StreamUsageReader();
  return chunks.map((c) => {
    reader.push(Buffer.from(c));
    return reader.promptTokens;
  });
}

describe('StreamUsageReader', () => {
  it('reads a promptTokenCount cut in two by a chunk boundary whole, wherever the cut falls', () => {
    const whole = frame(1234);
    for (let cut = 1; cut < whole.length; cut++) {
      const seen = read([whole.slice(0, cut), whole.slice(cut)]);
      expect(seen[1], `cut at ${cut}`).toBe(1234);
      // Never a truncated count in between: nothing, or the whole number.
      expect([undefined, 1234], `cut at ${cut}`).toContain(seen[0]);
    }
  });

  it('keeps the last complete count while the next one is cut', () => {
    const second = frame(5678);
    const at = second.indexOf('5678') + 2;
    expect(read([frame(1234), second.slice(0, at), second.slice(at)])).toEqual([1234, 1234, 5678]);
  });

  it('reads a count whose field name began two chunks before (tiny chunks)', () => {
    const whole = frame(987654);
    const chunks: string[] = [];
    for (let i = 0; i < whole.length; i += 3) chunks.push(whole.slice(i, i + 3));
    expect(read(chunks).at(-1)).toBe(987654);
  });

  it('finds the count in a large chunk and across the seam after one', () => {
    const big = `data: {"text":"${'x'.repeat(100_000)}"}\r\n\r\n`;
    const next = frame(42);
    const at = next.indexOf('42') + 1;
    expect(read([big, `${frame(7)}${next.slice(0, at)}`, next.slice(at)])).toEqual([undefined, 7, 42]);
  });

  it('ignores the field name quoted in model text (escaped)', () => {
    const chunk = 'data: {"text":"say \\"promptTokenCount\\": 5"}\r\n\r\n';
    expect(read([chunk])).toEqual([undefined]);
  });
});
