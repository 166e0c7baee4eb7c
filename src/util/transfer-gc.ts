/**
 * Keeps memory flat while large bodies stream through (file uploads and downloads).
 *
 * Bytes pass through as short-lived 64 kB buffers. Their memory lies outside V8's heap and is
 * freed only when V8 collects the small objects that hold it; a stream makes few such objects
 * per megabyte, so V8 waits until about 64 MB of dead buffers (its external-memory limit) have
 * piled up before it collects. While a transfer runs, a young-generation collection (a
 * scavenge: short, as it touches only new objects) every TRANSFER_GC_MS frees them
 * much sooner: `npm run bench:upload` measures the difference.
 *
 * V8 offers the collection only behind --expose-gc, which is set here at run time for this one
 * function; when that is not possible, transfers work the same without it.
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

export const TRANSFER_GC_MS = 100;

type Gc = (options: { type: 'minor' | 'major'; execution?: 'sync' | 'async' }) => void;

function exposeGc(): Gc | null {
  const existing = (globalThis as { gc?: unknown }).gc;
  if (typeof existing === 'function') return existing as Gc;
  try {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as unknown;
    return typeof gc === 'function' ? (gc as Gc) : null;
  } catch {
    return null;
  }
}

let gc: Gc | null | undefined;
let active = 0;
let timer: NodeJS.Timeout | null = null;

/** Runs `work` (a transfer) with young-generation collections every TRANSFER_GC_MS until it ends. */
export async function duringTransfer<T>(work: () => Promise<T>): Promise<T> {
  if (gc === undefined) gc = exposeGc();
  const collect = gc;
  if (collect === null) return work();
  active += 1;
  if (timer === null) {
    timer = setInterval(() => collect({ type: 'minor' }), TRANSFER_GC_MS);
    timer.unref();
  }
  try {
    return await work();
  } finally {
    active -= 1;
    if (active === 0 && timer !== null) {
      clearInterval(timer);
      timer = null;
    }
  }
}
