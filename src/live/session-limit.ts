import type { KeyConfig } from '../config/keys.ts';

/**
 * Concurrent Live API sessions per (project, model) when neither the keys file (`live_sessions`,
 * per key or in `defaults`) nor the tier table (`sessions`, tier1 and up for the Live models)
 * gives a number: 3, the figure AI Studio's free tier is commonly quoted with (Google publishes
 * none for it).
 */
export const DEFAULT_LIVE_SESSIONS = 3;

/** The session limit the key's project has for `model` (a normalized name): the key's config decides. */
export function liveSessionLimit(key: KeyConfig | undefined, model: string): number {
  return key?.liveSessions?.all ?? key?.liveSessions?.models[model] ?? DEFAULT_LIVE_SESSIONS;
}

/** The store's slot scope of a (project, model): store.acquireSlot counts its sessions. */
export function liveScope(project: string, model: string): string {
  return `live\t${project}\t${model}`;
}
