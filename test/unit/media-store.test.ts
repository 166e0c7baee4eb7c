import { mkdir, mkdtemp, readdir, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { makePng } from '../../fake/fake-image-providers.ts';
import { createMediaStore } from '../../src/services/image-gen/media-store.ts';

const PNG = Buffer.from(
  'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==',
  'base64',
);
const DAY = 24 * 3600_000;
const UUID = '0b6e2c1e-4f5d-4a8e-9a39-3d2f1c0e7a11';

describe('media store retention', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'media-store-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('prune deletes only its own images written before the cut-off', async () => {
    const media = createMediaStore(dir);
    const old = await media.save(PNG);
    const fresh = await media.save(PNG);
    const tenDaysAgo = new Date(Date.now() - 10 * DAY);
    await utimes(join(dir, old.file), tenDaysAgo, tenDaysAgo);
    // Not of the store's naming: never touched, however old.
    await writeFile(join(dir, 'notes.txt'), 'keep me');
    await utimes(join(dir, 'notes.txt'), tenDaysAgo, tenDaysAgo);

    expect(await media.prune(Date.now() - 7 * DAY)).toBe(1);
    expect((await readdir(dir)).sort()).toEqual([fresh.file, 'notes.txt'].sort());
    expect(await media.read(old.file)).toBeNull();
    expect(await media.read(fresh.file)).not.toBeNull();
    expect(await media.prune(Date.now() - 7 * DAY)).toBe(0);
  });

  it('prune of a directory that does not exist yet deletes nothing', async () => {
    expect(await createMediaStore(join(dir, 'not-yet')).prune(Date.now())).toBe(0);
  });
});

describe('media store: only its own names, content type from the bytes', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'media-names-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const age = async (name: string) => {
    const old = new Date(Date.now() - 30 * DAY);
    await utimes(join(dir, name), old, old);
  };

  it('prune and read leave alone names that merely contain a media name', async () => {
    const media = createMediaStore(dir);
    const png = makePng(2, 2, [1, 2, 3]);
    const own = await media.save(png);
    const foreign = [`backup-${UUID}.png`, `${UUID}.png.bak`, `x${UUID}.png`, `${UUID}.pngx`];
    for (const name of foreign) {
      await writeFile(join(dir, name), png);
      await age(name);
      expect(await media.read(name), name).toBeNull();
    }
    await age(own.file);
    expect(await media.prune(Date.now() - DAY)).toBe(1);
    expect((await readdir(dir)).sort()).toEqual([...foreign].sort());
  });

  it('prune skips a directory that has a media name (and still deletes old images)', async () => {
    const media = createMediaStore(dir);
    const own = await media.save(makePng(2, 2, [1, 2, 3]));
    await age(own.file);
    const dirName = `${UUID}.png`;
    await mkdir(join(dir, dirName));
    await age(dirName);
    expect(await media.prune(Date.now() - DAY)).toBe(1);
    expect(await readdir(dir)).toEqual([dirName]);
  });

  it('serves the content type of the bytes, not of the extension', async () => {
    const media = createMediaStore(dir);
    const jpeg = Buffer.concat([Buffer.from([0xff, 0xd8, 0xff, 0xe0]), Buffer.alloc(32)]);
    await writeFile(join(dir, `${UUID}.png`), jpeg);
    expect((await media.read(`${UUID}.png`))?.contentType).toBe('image/jpeg');
  });
});
