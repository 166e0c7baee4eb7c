import { mkdtemp, readdir, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createMediaStore } from '../../src/services/image-gen/media-store.ts';

const PNG = Buffer.from(
  'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==',
  'base64',
);
const DAY = 24 * 3600_000;

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
