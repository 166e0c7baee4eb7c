/**
 * The fake's Batch API, as Google serves it (wire format from @google/genai's batches module):
 *
 * - `POST /v1beta/models/{m}:batchGenerateContent` with `{batch: {displayName?, inputConfig:
 *   {requests: {requests: [{request, metadata?}]}} | {fileName: "files/…"}}}` and
 *   `POST …:asyncBatchEmbedContent` (`requests[].request.content`, or `file_name`) answer the
 *   batch as an operation: `{name: "batches/…", metadata: {"@type", model, displayName, state:
 *   "BATCH_STATE_PENDING", createTime, updateTime, batchStats, name}}`.
 * - `GET /v1beta/batches/{id}` polls it: each poll by its project moves it on (PENDING, RUNNING,
 *   then SUCCEEDED after `pollsToFinish` polls), and a finished batch carries `done: true`, its
 *   results in `metadata.output` and `response` (inline responses, or a `responsesFile` for a file
 *   input, a generated file of the batch's project).
 * - `GET /v1beta/batches` lists the key's project's batches (`{operations, nextPageToken}`),
 *   `POST /v1beta/batches/{id}:cancel` and `DELETE /v1beta/batches/{id}` answer `{}`.
 *
 * A batch belongs to the project of the key that created it: another project's key gets 403
 * PERMISSION_DENIED, and a batch whose input file is another project's is refused the same way.
 */
import { randomBytes } from 'node:crypto';
import type { FakeFileStore } from './fake-file-store.ts';
import {
  buildAnswer,
  contentText,
  countRequestTokens,
  DEFAULT_EMBEDDING_DIMENSIONS,
  embedText,
  IMAGE_OUTPUT_TOKENS,
  MODELS_BY_NAME,
  textTokens,
} from './fake-gemini-content.ts';
import { errModelNotFound } from './fake-gemini-errors.ts';
import {
  errInvalid,
  errNotFound,
  type FakeRequestContext,
  type FakeSurface,
  isObject,
} from './fake-surface.ts';

type Obj = Record<string, unknown>;

export interface FakeBatchOptions {
  /** Polls (GET by the owning project) after which a batch has succeeded; default 2. */
  pollsToFinish?: number;
}

type BatchState =
  | 'BATCH_STATE_PENDING'
  | 'BATCH_STATE_RUNNING'
  | 'BATCH_STATE_SUCCEEDED'
  | 'BATCH_STATE_CANCELLED';

interface Batch {
  name: string;
  project: string;
  model: string;
  kind: 'generate' | 'embed';
  displayName: string;
  /** Inline requests (each the inner `request` object with its metadata), or the input file's lines. */
  requests: Array<{ request: Obj; metadata?: unknown; key?: unknown }>;
  inputFile: string | null;
  createTime: string;
  updateTime: string;
  endTime: string | null;
  polls: number;
  state: BatchState;
  /** Set once it succeeded: what metadata.output and response carry. */
  output: Obj | null;
}

const TYPE = 'type.googleapis.com/google.ai.generativelanguage.v1main.';
const ROUTE =
  /^\/(v1beta|v1)\/(?:models\/([^/:]+):(batchGenerateContent|asyncBatchEmbedContent)|batches(?:\/([^/:]+)(:cancel)?)?)$/;
const MAX_PAGE = 100;

export function fakeBatches(files: FakeFileStore, options: FakeBatchOptions = {}): FakeSurface {
  const batches = new Map<string, Batch>();
  const pollsToFinish = Math.max(1, options.pollsToFinish ?? 2);

  function create(ctx: FakeRequestContext, version: string, model: string, kind: Batch['kind']) {
    const info = MODELS_BY_NAME.get(model);
    const method = kind === 'generate' ? 'batchGenerateContent' : 'asyncBatchEmbedContent';
    const needed = kind === 'generate' ? 'generateContent' : 'embedContent';
    if (info === undefined || !info.methods.includes(needed))
      return ctx.sendError(errModelNotFound(model, version, method));
    if (ctx.bodyInvalid || !isObject(ctx.body))
      return ctx.sendError(errInvalid('Invalid JSON payload received.'));
    const batch = ctx.body.batch;
    if (!isObject(batch)) return ctx.sendError(errInvalid('* batch: batch is not specified\n'));
    const input = batch.inputConfig ?? batch.input_config;
    if (!isObject(input))
      return ctx.sendError(errInvalid('* batch.input_config: input_config is not specified\n'));
    const fileName = input.fileName ?? input.file_name;
    let requests: Batch['requests'] = [];
    let inputFile: string | null = null;
    if (typeof fileName === 'string') {
      const file = files.get(fileName);
      if (file === undefined || file.project !== ctx.project)
        return ctx.denyPermission('File', fileName.replace(/^files\//, ''));
      inputFile = fileName;
      for (const line of file.bytes.toString('utf8').split('\n')) {
        if (line.trim() === '') continue;
        let parsed: unknown;
        try {
          parsed = JSON.parse(line);
        } catch {
          return ctx.sendError(errInvalid(`The input file ${fileName} is not valid JSONL.`));
        }
        if (!isObject(parsed) || !isObject(parsed.request))
          return ctx.sendError(errInvalid(`Each line of ${fileName} needs a "request" object.`));
        requests.push({ request: parsed.request, key: parsed.key, metadata: parsed.metadata });
      }
    } else {
      const wrapper = input.requests;
      const list = isObject(wrapper) ? wrapper.requests : undefined;
      if (!Array.isArray(list) || list.length === 0)
        return ctx.sendError(errInvalid('* batch.input_config.requests: requests is not specified\n'));
      for (const item of list) {
        if (!isObject(item) || !isObject(item.request))
          return ctx.sendError(
            errInvalid('* batch.input_config.requests.requests[].request: request is not specified\n'),
          );
        requests.push({ request: item.request, metadata: item.metadata });
      }
    }
    if (requests.length === 0) requests = [];
    const now = new Date().toISOString();
    const name = `batches/${batchId()}`;
    const b: Batch = {
      name,
      project: ctx.project,
      model,
      kind,
      displayName: typeof batch.displayName === 'string' ? batch.displayName : name,
      requests,
      inputFile,
      createTime: now,
      updateTime: now,
      endTime: null,
      polls: 0,
      state: 'BATCH_STATE_PENDING',
      output: null,
    };
    batches.set(name, b);
    ctx.send(200, JSON.stringify(operationJson(b)));
  }

  /** The batch named by the path, when the key's project owns it (answers the refusal otherwise). */
  function owned(ctx: FakeRequestContext, id: string): Batch | undefined {
    const b = batches.get(`batches/${id}`);
    if (b === undefined) {
      ctx.sendError(errNotFound());
      return undefined;
    }
    if (b.project !== ctx.project) {
      ctx.denyPermission('Batch', id);
      return undefined;
    }
    return b;
  }

  function advance(b: Batch): void {
    if (b.state === 'BATCH_STATE_SUCCEEDED' || b.state === 'BATCH_STATE_CANCELLED') return;
    b.polls += 1;
    b.updateTime = new Date().toISOString();
    if (b.polls >= pollsToFinish) finish(b);
    else b.state = 'BATCH_STATE_RUNNING';
  }

  function finish(b: Batch): void {
    const results = b.requests.map((r) => {
      const response =
        b.kind === 'generate' ? generateResponse(b.model, r.request) : embedResponse(r.request);
      return { response, metadata: r.metadata, key: r.key };
    });
    if (b.inputFile !== null) {
      const lines = results.map((r) => JSON.stringify({ key: r.key, response: r.response })).join('\n');
      const file = files.add({
        project: b.project,
        mimeType: 'application/jsonl',
        bytes: Buffer.from(`${lines}\n`),
        source: 'GENERATED',
        displayName: `${b.name} results`,
      });
      b.output = { responsesFile: file.name };
    } else {
      const inlined = results.map((r) => (r.metadata === undefined ? { response: r.response } : r));
      b.output = { inlinedResponses: { inlinedResponses: inlined } };
    }
    b.state = 'BATCH_STATE_SUCCEEDED';
    b.endTime = new Date().toISOString();
  }

  function list(ctx: FakeRequestContext): void {
    const mine = [...batches.values()].filter((b) => b.project === ctx.project).reverse();
    const asked = Number(ctx.query.get('pageSize') ?? MAX_PAGE);
    const size = Math.min(MAX_PAGE, asked > 0 ? asked : MAX_PAGE);
    const from = Number(ctx.query.get('pageToken') ?? 0) || 0;
    const page = mine.slice(from, from + size).map(operationJson);
    const next = from + size < mine.length ? { nextPageToken: String(from + size) } : {};
    ctx.send(200, JSON.stringify({ operations: page, ...next }));
  }

  return {
    matches: (method, path) => {
      const m = ROUTE.exec(path);
      if (m === null) return false;
      if (m[2] !== undefined || m[5] !== undefined) return method === 'POST';
      if (m[4] === undefined) return method === 'GET';
      return method === 'GET' || method === 'DELETE';
    },
    handle(ctx) {
      const m = ROUTE.exec(ctx.path)!;
      const [, version, model, action, id, cancel] = m;
      if (model !== undefined)
        return create(ctx, version!, model, action === 'batchGenerateContent' ? 'generate' : 'embed');
      if (id === undefined) return list(ctx);
      const b = owned(ctx, id);
      if (b === undefined) return;
      if (cancel !== undefined) {
        if (b.state === 'BATCH_STATE_PENDING' || b.state === 'BATCH_STATE_RUNNING') {
          b.state = 'BATCH_STATE_CANCELLED';
          b.endTime = b.updateTime = new Date().toISOString();
        }
        return ctx.send(200, '{}');
      }
      if (ctx.method === 'DELETE') {
        batches.delete(b.name);
        return ctx.send(200, '{}');
      }
      advance(b);
      ctx.send(200, JSON.stringify(operationJson(b)));
    },
    reset: () => batches.clear(),
  };
}

function batchId(): string {
  const alphabet = 'abcdefghijklmnopqrstuvwxyz0123456789';
  let id = '';
  for (const b of randomBytes(16)) id += alphabet[b % alphabet.length];
  return id;
}

/** The batch as Google answers it: an operation whose metadata is the batch. */
function operationJson(b: Batch): Obj {
  const count = String(b.requests.length);
  const done = b.state === 'BATCH_STATE_SUCCEEDED' || b.state === 'BATCH_STATE_CANCELLED';
  const stats: Obj = { requestCount: count };
  if (b.state === 'BATCH_STATE_SUCCEEDED') stats.successfulRequestCount = count;
  else if (!done) stats.pendingRequestCount = count;
  const metadata: Obj = {
    '@type': `${TYPE}${b.kind === 'generate' ? 'GenerateContentBatch' : 'EmbedContentBatch'}`,
    model: `models/${b.model}`,
    displayName: b.displayName,
    createTime: b.createTime,
    updateTime: b.updateTime,
    batchStats: stats,
    state: b.state,
    name: b.name,
  };
  if (b.endTime !== null) metadata.endTime = b.endTime;
  if (b.inputFile !== null) metadata.inputConfig = { fileName: b.inputFile };
  if (b.output !== null) metadata.output = b.output;
  const op: Obj = { name: b.name, metadata };
  if (done) op.done = true;
  if (b.output !== null) {
    op.response = {
      '@type': `${TYPE}${b.kind === 'generate' ? 'GenerateContentBatchOutput' : 'EmbedContentBatchOutput'}`,
      ...b.output,
    };
  }
  return op;
}

function generateResponse(model: string, request: Obj): Obj {
  const answer = buildAnswer(model, request, 1);
  const prompt = countRequestTokens(request);
  const text = answer.textPieces.join('');
  const parts: unknown[] = [];
  if (answer.textPieces.length > 0) parts.push({ text });
  if (answer.image !== null) parts.push({ inlineData: { mimeType: 'image/png', data: answer.image } });
  const candidates = answer.image !== null ? IMAGE_OUTPUT_TOKENS : textTokens(text);
  return {
    candidates: [{ content: { parts, role: 'model' }, finishReason: 'STOP', index: 0 }],
    usageMetadata: {
      promptTokenCount: prompt.total,
      candidatesTokenCount: candidates,
      totalTokenCount: prompt.total + candidates,
    },
    modelVersion: model,
  };
}

function embedResponse(request: Obj): Obj {
  const dims =
    typeof request.outputDimensionality === 'number'
      ? request.outputDimensionality
      : DEFAULT_EMBEDDING_DIMENSIONS;
  return { embedding: { values: embedText(contentText(request.content), dims) } };
}
