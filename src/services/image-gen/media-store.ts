import { randomUUID } from 'node:crypto';
import { lstat, mkdir, readdir, readFile, unlink, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { UpstreamFailed } from '../../errors/gateway-errors.ts';
import { detectImageType } from '../../media/image-type.ts';

/**
 * Generated images on disk (MEDIA_DIR), served at /media/<file>. File names are a random UUID
 * plus the extension of the detected type: never derived from user input. Reads accept only
 * names of exactly that shape, so no path can leave the directory.
 */

export const MEDIA_FILE_RE =
  /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\.(png|jpg|webp|gif|heic)$/;

const TYPE_BY_EXT: Record<string, string> = {
  png: 'image/png',
  jpg: 'image/jpeg',
  webp: 'image/webp',
  gif: 'image/gif',
  heic: 'image/heic',
};

export interface StoredImage {
  file: string;
  /** Path under the gateway: /media/<file> */
  url: string;
  mimeType: string;
}

export interface MediaFile {
  bytes: Buffer;
  contentType: string;
}

export interface MediaStore {
  readonly dir: string;
  save(bytes: Buffer): Promise<StoredImage>;
  /** null when the name is not a media file name or the file does not exist. */
  read(file: string): Promise<MediaFile | null>;
  /** Deletes the stored images last written before `beforeMs`; returns how many. */
  prune(beforeMs: number): Promise<number>;
}

export function createMediaStore(dir: string): MediaStore {
  const root = resolve(dir);
  let ready: Promise<unknown> | null = null;
  const ensureDir = () => {
    ready ??= mkdir(root, { recursive: true }).catch((err: unknown) => {
      ready = null;
      throw err;
    });
    return ready;
  };
  return {
    dir: root,
    async save(bytes) {
      const type = detectImageType(bytes);
      if (!type) throw new UpstreamFailed('the generated image is not a recognised image');
      await ensureDir();
      const file = `${randomUUID()}.${type.ext}`;
      await writeFile(join(root, file), bytes, { flag: 'wx', mode: 0o644 });
      return { file, url: `/media/${file}`, mimeType: type.mimeType };
    },
    async read(file) {
      if (!MEDIA_FILE_RE.test(file)) return null;
      const path = join(root, file);
      try {
        const st = await lstat(path);
        if (!st.isFile()) return null;
        const bytes = await readFile(path);
        const ext = file.slice(file.lastIndexOf('.') + 1);
        const contentType =
          detectImageType(bytes)?.mimeType ?? TYPE_BY_EXT[ext] ?? 'application/octet-stream';
        return { bytes, contentType };
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
        throw err;
      }
    },
    async prune(beforeMs) {
      let names: string[];
      try {
        names = await readdir(root);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 0;
        throw err;
      }
      let removed = 0;
      // Only files of the store's own naming: anything else in the directory is left alone.
      for (const name of names) {
        if (!MEDIA_FILE_RE.test(name)) continue;
        const path = join(root, name);
        try {
          const st = await lstat(path);
          if (!st.isFile() || st.mtimeMs >= beforeMs) continue;
          await unlink(path);
          removed += 1;
        } catch (err) {
          // Another instance sharing MEDIA_DIR may have removed it first.
          if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
        }
      }
      return removed;
    },
  };
}

/** How often the retention sweep runs at most (a shorter retention sweeps more often). */
const PRUNE_EVERY_MS = 10 * 60_000;
const PRUNE_EVERY_MIN_MS = 1000;

/** The sweep's period for a retention: a tenth of it, between one second and ten minutes. */
export function pruneInterval(retentionMs: number): number {
  return Math.min(PRUNE_EVERY_MS, Math.max(PRUNE_EVERY_MIN_MS, Math.round(retentionMs / 10)));
}

/**
 * MEDIA_RETENTION_HOURS: deletes images older than the retention now and then periodically
 * (pruneInterval), so an image lives at most the retention plus a tenth of it (plus ten minutes
 * at most). Several instances (or workers) sharing MEDIA_DIR each sweep it; a file another one
 * removed first is skipped. Returns the function that stops it.
 */
export function schedulePruning(
  media: MediaStore,
  retentionMs: number,
  onSwept: (removed: number, err?: unknown) => void,
): () => void {
  let running = false;
  const sweep = () => {
    if (running) return; // a slow directory (a network volume): one sweep at a time
    running = true;
    media.prune(Date.now() - retentionMs).then(
      (removed) => {
        running = false;
        onSwept(removed);
      },
      (err: unknown) => {
        running = false;
        onSwept(0, err);
      },
    );
  };
  sweep();
  const timer = setInterval(sweep, pruneInterval(retentionMs));
  timer.unref();
  return () => clearInterval(timer);
}
