/**
 * Every stateful surface of the fake Gemini (fake-surface.ts), in the order they are asked. One
 * file store is shared by all: a generated video or a batch's results is a file like an upload.
 */
import { fakeBatches } from './fake-batches.ts';
import { FakeCaches } from './fake-caches.ts';
import type { FakeFileStore } from './fake-file-store.ts';
import { FakeFiles } from './fake-files.ts';
import type { FakeGeminiOptions } from './fake-gemini.ts';
import { fakeInteractions } from './fake-interactions.ts';
import { fakeOperations } from './fake-operations.ts';
import type { FakeSurface } from './fake-surface.ts';

export function fakeSurfaces(opts: FakeGeminiOptions, files: FakeFileStore): FakeSurface[] {
  const fileApi = new FakeFiles(files, { fileProcessingMs: opts.fileProcessingMs, now: opts.now });
  return [
    fakeBatches(files, { pollsToFinish: opts.jobs?.pollsToFinish }),
    fakeOperations(files, { pollsToFinish: opts.jobs?.pollsToFinish }),
    fakeInteractions({
      pollsToFinish: opts.jobs?.pollsToFinish,
      streamChunks: opts.streamChunks,
      chunkDelayMs: opts.chunkDelayMs,
    }),
    // The Files API (uploads, get, list, delete) and cached contents (fake-files.ts, fake-caches.ts).
    fileApi,
    new FakeCaches(fileApi, { now: opts.now }),
  ];
}
