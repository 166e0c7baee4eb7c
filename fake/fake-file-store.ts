/**
 * The fake's files (Google's Files API storage): each belongs to the project of the key that
 * made it. Generated files (a Veo video, a batch's results) are made by the fake itself, for the
 * project of the key that made the operation or batch, and are downloadable by that project only
 * (`GET /v1beta/files/{id}:download?alt=media`, fake-files.ts).
 */
import { randomBytes } from 'node:crypto';

export interface FakeStoredFile {
  /** `files/<id>`: lowercase letters and digits, as Google's ids. */
  name: string;
  project: string;
  mimeType: string;
  bytes: Buffer;
  source: 'UPLOADED' | 'GENERATED';
  createTime: string;
  displayName?: string;
}

export class FakeFileStore {
  private readonly files = new Map<string, FakeStoredFile>();

  /** Stores a file for `project` and returns it (its name is new). */
  add(file: Omit<FakeStoredFile, 'name' | 'createTime'> & { name?: string }): FakeStoredFile {
    const name = file.name ?? `files/${fileId()}`;
    const stored: FakeStoredFile = { ...file, name, createTime: new Date().toISOString() };
    this.files.set(name, stored);
    return stored;
  }

  get(name: string): FakeStoredFile | undefined {
    return this.files.get(name);
  }

  delete(name: string): boolean {
    return this.files.delete(name);
  }

  /** The project's files, oldest first. */
  list(project: string): FakeStoredFile[] {
    return [...this.files.values()].filter((f) => f.project === project);
  }

  clear(): void {
    this.files.clear();
  }
}

/** A Google-like file id: 12 lowercase letters and digits (the SDK's tFileName reads [a-z0-9]+). */
export function fileId(): string {
  const alphabet = 'abcdefghijklmnopqrstuvwxyz0123456789';
  let id = '';
  for (const b of randomBytes(12)) id += alphabet[b % alphabet.length];
  return id;
}
