import { createHash, randomBytes } from 'node:crypto';
import { z } from 'zod';
import { ConfigError, parseSettingJson } from '../config/env.ts';
import { normalizeModel } from '../pool/models.ts';

/**
 * A gateway client: who may call the gateway with which token, how much, and on which models.
 * Clients come from CLIENT_API_KEYS_MAP ('env'), CLIENTS_FILE ('file') and the admin API
 * ('admin', kept in the state store). Tokens are known only by their SHA-256 digest.
 */
export type ClientSource = 'env' | 'file' | 'admin';

/** A client's own budget; absent fields are not limited (requests_per_minute: CLIENT_RATE_LIMIT(S)). */
export interface ClientLimits {
  requestsPerMinute?: number;
  /** Requests per Pacific calendar day (the day the key pool's budgets count). */
  requestsPerDay?: number;
  /** Prompt + output tokens per Pacific day, as the usage accounting reports them (ClientBudget.recordTokens). */
  tokensPerDay?: number;
}

export interface Client {
  readonly name: string;
  readonly source: ClientSource | 'anonymous';
  /** Lower-case hex SHA-256 of the token. */
  readonly tokenSha256: string;
  readonly limits: Readonly<ClientLimits>;
  /** Allowed models (normalized; a trailing `*` matches a prefix); null: every model. */
  readonly models: readonly string[] | null;
  readonly expiresAtMs: number | null;
  readonly enabled: boolean;
  readonly createdAtMs: number | null;
  readonly updatedAtMs: number | null;
}

/** The caller of a gateway opened with ALLOW_ANONYMOUS and no client tokens. */
export const ANONYMOUS: Client = Object.freeze({
  name: 'anonymous',
  source: 'anonymous',
  tokenSha256: '',
  limits: {},
  models: null,
  expiresAtMs: null,
  enabled: true,
  createdAtMs: null,
  updatedAtMs: null,
});

export function tokenDigest(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

/** A new client token: 32 random bytes, base64url, with a prefix that says what it is. */
export function mintToken(): string {
  return `gwc_${randomBytes(32).toString('base64url')}`;
}

/** Letters, digits and `_ . : @ -`: names go into store keys, log lines and metric labels. */
export const CLIENT_NAME = /^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,63}$/;
const MODEL_PATTERN = /^(models\/)?[A-Za-z0-9][A-Za-z0-9._-]{0,127}\*?$/;

const limit = z.number().int().min(0);
export const limitsSchema = z
  .object({
    requests_per_minute: limit.optional(),
    requests_per_day: limit.optional(),
    tokens_per_day: limit.optional(),
  })
  .strict();

const nameSchema = z.string().regex(CLIENT_NAME, 'letters, digits and _ . : @ - only (at most 64)');
const modelsSchema = z
  .array(z.string().regex(MODEL_PATTERN, 'a model name (a trailing * matches a prefix)'))
  .max(200);
const expiresSchema = z.iso.datetime({
  offset: true,
  message: 'an ISO 8601 date-time, e.g. 2027-01-31T00:00:00Z',
});

/** A client as CLIENTS_FILE holds it: a token in plain text or as its SHA-256. */
const fileEntrySchema = z
  .object({
    name: nameSchema,
    token: z.string().min(16, 'at least 16 characters').max(512).optional(),
    token_sha256: z
      .string()
      .regex(/^[0-9a-fA-F]{64}$/, 'the hex SHA-256 of the token (64 characters)')
      .optional(),
    limits: limitsSchema.optional(),
    models: modelsSchema.nullable().optional(),
    expires_at: expiresSchema.nullable().optional(),
    enabled: z.boolean().optional(),
  })
  .strict()
  .refine((e) => (e.token === undefined) !== (e.token_sha256 === undefined), {
    message: 'give exactly one of token and token_sha256',
  });

const clientsFileSchema = z.union([
  z.object({ clients: z.array(fileEntrySchema) }).strict(),
  z.array(fileEntrySchema),
]);

/** The body of POST /admin/clients. */
export const createBodySchema = z
  .object({
    name: nameSchema,
    limits: limitsSchema.optional(),
    models: modelsSchema.nullable().optional(),
    expires_at: expiresSchema.nullable().optional(),
    enabled: z.boolean().optional(),
  })
  .strict();

/** The body of PATCH /admin/clients/{name}: the fields given replace the client's (null clears). */
export const patchBodySchema = z
  .object({
    limits: limitsSchema.nullable().optional(),
    models: modelsSchema.nullable().optional(),
    expires_at: expiresSchema.nullable().optional(),
    enabled: z.boolean().optional(),
  })
  .strict();

export type CreateBody = z.infer<typeof createBodySchema>;
export type PatchBody = z.infer<typeof patchBodySchema>;

/** The record an admin client is stored as (JSON in the state store and in DATA_DIR/clients.json). */
const recordSchema = z.object({
  name: nameSchema,
  token_sha256: z.string().regex(/^[0-9a-f]{64}$/),
  limits: limitsSchema.optional(),
  models: z.array(z.string()).nullable().optional(),
  expires_at: z.string().nullable().optional(),
  enabled: z.boolean().optional(),
  created_at: z.string().nullable().optional(),
  updated_at: z.string().nullable().optional(),
});

export function limitsFrom(l: z.infer<typeof limitsSchema> | null | undefined): ClientLimits {
  const out: ClientLimits = {};
  if (l?.requests_per_minute !== undefined) out.requestsPerMinute = l.requests_per_minute;
  if (l?.requests_per_day !== undefined) out.requestsPerDay = l.requests_per_day;
  if (l?.tokens_per_day !== undefined) out.tokensPerDay = l.tokens_per_day;
  return out;
}

export function limitsView(l: Readonly<ClientLimits>) {
  return {
    requests_per_minute: l.requestsPerMinute ?? null,
    requests_per_day: l.requestsPerDay ?? null,
    tokens_per_day: l.tokensPerDay ?? null,
  };
}

function limitsRecord(l: Readonly<ClientLimits>): z.infer<typeof limitsSchema> {
  const out: z.infer<typeof limitsSchema> = {};
  if (l.requestsPerMinute !== undefined) out.requests_per_minute = l.requestsPerMinute;
  if (l.requestsPerDay !== undefined) out.requests_per_day = l.requestsPerDay;
  if (l.tokensPerDay !== undefined) out.tokens_per_day = l.tokensPerDay;
  return out;
}

export function modelsFrom(models: readonly string[] | null | undefined): string[] | null {
  if (models === null || models === undefined) return null;
  return [...new Set(models.map(normalizeModel))];
}

const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());
const ms = (s: string | null | undefined) => (s ? Date.parse(s) : null);

/** An admin client as stored: no token, its digest only. */
export function toRecord(c: Client): string {
  return JSON.stringify({
    name: c.name,
    token_sha256: c.tokenSha256,
    limits: limitsRecord(c.limits),
    models: c.models,
    expires_at: iso(c.expiresAtMs),
    enabled: c.enabled,
    created_at: iso(c.createdAtMs),
    updated_at: iso(c.updatedAtMs),
  });
}

/** A stored record as a client; null when it is not one (written by a newer or broken version). */
export function fromRecord(text: string): Client | null {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    return null;
  }
  const r = recordSchema.safeParse(json);
  if (!r.success) return null;
  const d = r.data;
  return {
    name: d.name,
    source: 'admin',
    tokenSha256: d.token_sha256,
    limits: limitsFrom(d.limits),
    models: modelsFrom(d.models),
    expiresAtMs: ms(d.expires_at),
    enabled: d.enabled !== false,
    createdAtMs: ms(d.created_at),
    updatedAtMs: ms(d.updated_at),
  };
}

/** A client as the admin API shows it: never its token, nor the token's digest. */
export function clientView(c: Client, nowMs: number) {
  return {
    name: c.name,
    source: c.source,
    state: stateOf(c, nowMs),
    enabled: c.enabled,
    limits: limitsView(c.limits),
    models: c.models,
    expires_at: iso(c.expiresAtMs),
    created_at: iso(c.createdAtMs),
    updated_at: iso(c.updatedAtMs),
  };
}

export function stateOf(c: Client, nowMs: number): 'active' | 'disabled' | 'expired' {
  if (!c.enabled) return 'disabled';
  if (c.expiresAtMs !== null && nowMs >= c.expiresAtMs) return 'expired';
  return 'active';
}

/** CLIENT_API_KEYS_MAP's clients (token → name): no limits of their own, every model. */
export function envClients(map: ReadonlyMap<string, string>): Client[] {
  return [...map].map(([token, name]) => ({
    name,
    source: 'env' as const,
    tokenSha256: tokenDigest(token),
    limits: {},
    models: null,
    expiresAtMs: null,
    enabled: true,
    createdAtMs: null,
    updatedAtMs: null,
  }));
}

/**
 * CLIENTS_FILE's text as clients, with the plain tokens it holds (secrets to scrub from logs).
 * ConfigError names the entry and field at fault, never a value.
 */
export function parseClientsFile(text: string): { clients: Client[]; plainTokens: string[] } {
  const parsed = parseSettingJson(text, 'CLIENTS_FILE', 'clients file', clientsFileSchema);
  const entries = Array.isArray(parsed) ? parsed : parsed.clients;
  const plainTokens: string[] = [];
  const clients = entries.map((e): Client => {
    if (e.token !== undefined) plainTokens.push(e.token);
    return {
      name: e.name,
      source: 'file',
      tokenSha256: e.token_sha256?.toLowerCase() ?? tokenDigest(e.token!),
      limits: limitsFrom(e.limits),
      models: modelsFrom(e.models),
      expiresAtMs: ms(e.expires_at),
      enabled: e.enabled !== false,
      createdAtMs: null,
      updatedAtMs: null,
    };
  });
  assertDistinct(clients, 'CLIENTS_FILE');
  return { clients, plainTokens };
}

/** Two clients of one name, or one token for two clients, are refused (by position, never by value). */
export function assertDistinct(clients: readonly Client[], where: string): void {
  const names = new Map<string, number>();
  const digests = new Map<string, number>();
  clients.forEach((c, i) => {
    const n = names.get(c.name);
    if (n !== undefined)
      throw new ConfigError(`${where}: clients ${n + 1} and ${i + 1} have the same name "${c.name}"`);
    const d = digests.get(c.tokenSha256);
    if (d !== undefined) throw new ConfigError(`${where}: clients ${d + 1} and ${i + 1} have the same token`);
    names.set(c.name, i);
    digests.set(c.tokenSha256, i);
  });
}

/** Whether the client may use `model` (normalized); an exact name or a `prefix*`. */
export function allowsModel(c: Client, model: string): boolean {
  const allowed = c.models;
  if (allowed === null) return true;
  const m = normalizeModel(model);
  for (const a of allowed) {
    if (a === m) return true;
    if (a.endsWith('*') && m.startsWith(a.slice(0, -1))) return true;
  }
  return false;
}
