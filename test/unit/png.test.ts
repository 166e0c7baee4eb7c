import { crc32, inflateSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { encodePng } from '../../src/media/png.ts';

describe('encodePng', () => {
  it('writes an 8-bit RGB PNG with correct chunk CRCs and the given pixels', () => {
    const png = encodePng(2, 1, (x) => [x * 100, 7, 9]);
    let off = 8;
    const chunks: Record<string, Buffer> = {};
    while (off < png.length) {
      const len = png.readUInt32BE(off);
      const type = png.subarray(off + 4, off + 8).toString('ascii');
      const data = png.subarray(off + 8, off + 8 + len);
      expect(png.readUInt32BE(off + 8 + len)).toBe(crc32(png.subarray(off + 4, off + 8 + len)));
      chunks[type] = data;
      off += 12 + len;
    }
    expect(Object.keys(chunks)).toEqual(['IHDR', 'IDAT', 'IEND']);
    expect([...chunks.IHDR!.subarray(8, 10)]).toEqual([8, 2]);
    expect([...inflateSync(chunks.IDAT!)]).toEqual([0, 0, 7, 9, 100, 7, 9]);
  });
});
