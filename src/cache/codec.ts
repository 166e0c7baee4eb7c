import { promisify } from 'node:util';
import { brotliCompress, brotliDecompress, constants } from 'node:zlib';

const compress = promisify(brotliCompress);
const decompress = promisify(brotliDecompress);

/** First byte of every stored value: how the rest is encoded. */
const RAW = 0x00;
const BROTLI = 0x01;

/**
 * JSON value → stored bytes. Values whose JSON exceeds `threshold` bytes are brotli-compressed
 * (quality 5: most of the gain for a fraction of the time of the default 11).
 */
export async function encodeValue(value: unknown, threshold: number): Promise<Buffer> {
  const json = Buffer.from(JSON.stringify(value), 'utf8');
  if (json.length > threshold) {
    const packed = await compress(json, {
      params: {
        [constants.BROTLI_PARAM_QUALITY]: 5,
        [constants.BROTLI_PARAM_MODE]: constants.BROTLI_MODE_TEXT,
        [constants.BROTLI_PARAM_SIZE_HINT]: json.length,
      },
    });
    // Incompressible data (rare for JSON) stays raw.
    if (packed.length < json.length) return Buffer.concat([Buffer.of(BROTLI), packed]);
  }
  return Buffer.concat([Buffer.of(RAW), json]);
}

export async function decodeValue(stored: Buffer): Promise<unknown> {
  if (stored.length === 0) throw new Error('empty cache value');
  const body = stored.subarray(1);
  switch (stored[0]) {
    case RAW:
      return JSON.parse(body.toString('utf8'));
    case BROTLI:
      return JSON.parse((await decompress(body)).toString('utf8'));
    default:
      throw new Error(`unknown cache value encoding ${stored[0]}`);
  }
}

/** True when the stored bytes are compressed (for tests and diagnostics). */
export function isCompressed(stored: Buffer): boolean {
  return stored[0] === BROTLI;
}
