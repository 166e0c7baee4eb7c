import { Agent } from 'undici';
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { KeyConfig } from '../../src/config/keys.ts';
import type { GatewayError } from '../../src/errors/gateway-errors.ts';
import { toProblem } from '../../src/http/errors.ts';
import type { HttpProblem } from '../../src/http/problem.ts';
import { KeyPool } from '../../src/pool/key-pool.ts';
import { MemoryStore } from '../../src/store/memory.ts';
import { Forwarder, type UpstreamAnswer, type UpstreamCall } from '../../src/upstream/forwarder.ts';
import { keyConfig } from '../helpers/keys.ts';
import {
  ok,
  overloaded,
  rateLimited,
  type ScriptedUpstream,
  startScriptedUpstream,
} from '../helpers/scripted-upstream.ts';

/**
 * Model fallback (MODEL_FALLBACKS): when the pool cannot serve the call's model, the next model
 * of the call's list is tried, with the path rewritten to name it; any other failure is the
 * call's answer, whatever fallbacks it names.
 */
const PRO = 'gemini-2.5-pro';
const FLASH = 'gemini-2.5-flash';
const LITE = 'gemini-2.5-flash-lite';
const agent = new Agent();
let upstream: ScriptedUpstream;

beforeEach(async () => {
  upstream = await startScriptedUpstream();
});
afterEach(async () => {
  await upstream.close();
});
afterAll(async () => {
  await agent.close();
});

/** A pool over the memory store that refuses at once when no key can serve. */
async function forwarderOver(keys: KeyConfig[]): Promise<Forwarder> {
  const pool = new KeyPool(new MemoryStore(), {
    queueMaxWaitMs: 0,
    circuit: { failureThreshold: 5, cooldownMs: 30_000 },
  });
  await pool.setKeys(keys);
  return new Forwarder({ baseUrl: upstream.url, agent, pool, maxAttempts: 4, attemptTimeoutMs: 5_000 });
}

/** One request per minute of `model` on the key; other models as usual. */
const onePerMinuteOf = (model: string) =>
  keyConfig('k1', {
    modelLimits: { [model]: { requestsPerMinute: 1, requestsPerDay: 1_000, tokensPerMinute: 1_000_000 } },
  });

function call(model: string, fallbacks?: string[]): UpstreamCall {
  return {
    method: 'POST',
    path: `/v1beta/models/${model}:generateContent`,
    search: '',
    body: '{"contents":[{"parts":[{"text":"hi"}]}]}',
    model,
    estimatedTokens: 5,
    stream: false,
    deadlineMs: Date.now() + 10_000,
    fallbacks,
  };
}

async function refusal(p: Promise<UpstreamAnswer>): Promise<HttpProblem> {
  const err = await p.then(
    (a) => new Error(`answered ${a.status}`),
    (e: unknown) => e,
  );
  return toProblem(err as GatewayError);
}

const pathsSeen = () => upstream.seen.map((r) => r.path);

describe('model fallback', () => {
  it('a model no key allows falls back to the next model, the path rewritten to name it', async () => {
    const f = await forwarderOver([keyConfig('k1', { models: [FLASH] })]);
    const answer = await f.forward(call(PRO, [FLASH]));
    expect(answer.status).toBe(200);
    expect(answer.model).toBe(FLASH);
    expect(pathsSeen()).toEqual([`/v1beta/models/${FLASH}:generateContent`]);
  });

  it('a model whose budget is spent falls back; the model itself serves while it can', async () => {
    const f = await forwarderOver([onePerMinuteOf(PRO)]);
    expect((await f.forward(call(PRO, [FLASH]))).model).toBe(PRO);
    expect((await f.forward(call(PRO, [FLASH]))).model).toBe(FLASH);
    expect(pathsSeen()).toEqual([
      `/v1beta/models/${PRO}:generateContent`,
      `/v1beta/models/${FLASH}:generateContent`,
    ]);
  });

  it('a 429 for the model’s quota rests it and the fallback serves, on the same key', async () => {
    const f = await forwarderOver([keyConfig('k1')]);
    upstream.script(rateLimited('60s', PRO), ok('from flash'));
    const answer = await f.forward(call(PRO, [FLASH]));
    expect(answer.status).toBe(200);
    expect(answer.model).toBe(FLASH);
    expect(answer.kind === 'unary' && answer.body.toString()).toContain('from flash');
    expect(pathsSeen()).toEqual([
      `/v1beta/models/${PRO}:generateContent`,
      `/v1beta/models/${FLASH}:generateContent`,
    ]);
  });

  it('tries the fallbacks in order until one can serve', async () => {
    const f = await forwarderOver([keyConfig('k1', { models: [LITE] })]);
    const answer = await f.forward(call(PRO, [FLASH, LITE]));
    expect(answer.model).toBe(LITE);
    expect(pathsSeen()).toEqual([`/v1beta/models/${LITE}:generateContent`]);
  });

  it('without fallbacks, the pool’s refusal is the answer', async () => {
    const f = await forwarderOver([onePerMinuteOf(PRO)]);
    expect((await f.forward(call(PRO))).model).toBe(PRO);
    const problem = await refusal(f.forward(call(PRO)));
    expect(problem.status).toBe(429);
    expect(pathsSeen()).toEqual([`/v1beta/models/${PRO}:generateContent`]);
  });

  it('when no fallback can serve either, the last refusal is the answer and nothing is sent', async () => {
    const f = await forwarderOver([keyConfig('k1', { models: [PRO] })]);
    const problem = await refusal(f.forward(call(FLASH, [LITE])));
    expect(problem.status).toBe(503);
    expect(problem.detail).toContain(LITE);
    expect(upstream.seen).toHaveLength(0);
  });

  it('an upstream failure that is not the model’s unavailability does not fall back', async () => {
    const f = await forwarderOver([keyConfig('k1'), keyConfig('k2')]);
    upstream.script(overloaded(), overloaded());
    const answer = await f.forward(call(PRO, [FLASH]));
    expect(answer.status).toBe(503);
    expect(answer.model).toBe(PRO);
    expect(pathsSeen()).toEqual([
      `/v1beta/models/${PRO}:generateContent`,
      `/v1beta/models/${PRO}:generateContent`,
    ]);
  });
});
