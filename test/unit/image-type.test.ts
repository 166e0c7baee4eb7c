import { describe, expect, it } from 'vitest';
import { detectImageType } from '../../src/media/image-type.ts';

/** Just enough of each format's header for detection: what the magic bytes say, nothing else. */
const pad = (head: Buffer) => Buffer.concat([head, Buffer.alloc(16)]);
const riff = (form: string) =>
  pad(Buffer.concat([Buffer.from('RIFF'), Buffer.from([0x24, 0, 0, 0]), Buffer.from(form)]));
const isoBmff = (brand: string) =>
  pad(Buffer.concat([Buffer.from([0, 0, 0, 0x18]), Buffer.from(`ftyp${brand}`)]));

describe('detectImageType (by content only)', () => {
  it.each([
    ['PNG', pad(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])), 'image/png', 'png'],
    ['JPEG', pad(Buffer.from([0xff, 0xd8, 0xff, 0xe0])), 'image/jpeg', 'jpg'],
    ['WebP', riff('WEBPVP8 '), 'image/webp', 'webp'],
    ['GIF89a', pad(Buffer.from('GIF89a')), 'image/gif', 'gif'],
    ['GIF87a', pad(Buffer.from('GIF87a')), 'image/gif', 'gif'],
    ['HEIC (heic brand)', isoBmff('heic'), 'image/heic', 'heic'],
    ['HEIF (mif1 brand)', isoBmff('mif1'), 'image/heic', 'heic'],
  ])('%s', (_name, bytes, mimeType, ext) => {
    expect(detectImageType(bytes)).toEqual({ mimeType, ext });
  });

  it.each([
    ['a WAV file (RIFF, not WEBP)', riff('WAVEfmt ')],
    ['an MP4 video (ftyp isom)', isoBmff('isom')],
    ['AVIF (not supported)', isoBmff('avif')],
    ['text', Buffer.from('<html><body>not an image</body></html>')],
    ['a PNG signature cut short', Buffer.from([0x89, 0x50, 0x4e, 0x47])],
    ['nothing', Buffer.alloc(0)],
  ])('%s is not an image', (_name, bytes) => {
    expect(detectImageType(bytes)).toBeNull();
  });
});

describe('image type by content: every magic byte counts', () => {
  const pad = (head: number[] | Buffer) => Buffer.concat([Buffer.from(head), Buffer.alloc(16)]);
  it('a PNG signature with a wrong last byte, or FF D8 without a marker, is not an image', () => {
    expect(detectImageType(pad([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x00]))).toBeNull();
    expect(detectImageType(pad([0xff, 0xd8, 0x00, 0xe0]))).toBeNull();
  });

  it.each(['heic', 'heix', 'hevc', 'hevx', 'heim', 'heis', 'mif1', 'msf1'])(
    'HEIF brand %s is HEIC',
    (brand) => {
      expect(
        detectImageType(pad(Buffer.concat([Buffer.from([0, 0, 0, 0x18]), Buffer.from(`ftyp${brand}`)]))),
      ).toEqual({
        mimeType: 'image/heic',
        ext: 'heic',
      });
    },
  );
});
