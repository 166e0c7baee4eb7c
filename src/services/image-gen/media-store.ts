import { randomUUID } from 'node:crypto';
import { lstat, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { HttpProblem } from '../../http/problem.ts';
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
      if (!type) throw new HttpProblem(502, 'the generated image is not a recognised image');
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
  };
}
