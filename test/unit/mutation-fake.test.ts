/**
 * Tests written by manual mutation testing of src/fake (the fake Gemini API): each one kills a
 * mutant that test/unit/fake-gemini.test.ts and the integration tests let survive.
 */
import { describe, expect, it } from 'vitest';
import { maskSecret } from '../../fake/fake-gemini.ts';
import { fakePerTest, type Json, KEY, post } from '../helpers/fake.ts';

const start = fakePerTest();

const GEN = '/v1beta/models/gemini-2.5-flash:generateContent';
const ARRAY = '/v1beta/models/gemini-2.5-flash:streamGenerateContent';
const EMBED = '/v1beta/models/gemini-embedding-001:embedContent';
const BATCH = '/v1beta/models/gemini-embedding-001:batchEmbedContents';
const userText = (text: string) => ({ contents: [{ role: 'user', parts: [{ text }] }] });
const withImage = {
  contents: [
    {
      role: 'user',
      parts: [{ text: '12345678' }, { inlineData: { mimeType: 'image/png', data: 'iVBORw0KGgo=' } }],
    },
  ],
};

function detail(json: Json, type: string): Json {
  return json.error.details?.find((d: Json) => d['@type'] === `type.googleapis.com/google.rpc.${type}`);
}

describe('usage details', () => {
  // Mutant: the IMAGE entry of usageMetadata.promptTokensDetails dropped.
  it('usageMetadata.promptTokensDetails has a TEXT and an IMAGE entry for a prompt with an image', async () => {
    const fake = await start();
    const r = await post(fake, GEN, withImage);
    expect(r.status).toBe(200);
    expect(r.json.usageMetadata.promptTokenCount).toBe(2 + 258);
    expect(r.json.usageMetadata.promptTokensDetails).toEqual([
      { modality: 'TEXT', tokenCount: 2 },
      { modality: 'IMAGE', tokenCount: 258 },
    ]);
  });

  // Mutant: countTokens ignores the `generateContentRequest` wrapper and counts the outer body.
  it('countTokens counts a wrapped generateContentRequest, with per-modality details', async () => {
    const fake = await start();
    const r = await post(fake, '/v1beta/models/gemini-2.5-flash:countTokens', {
      generateContentRequest: { model: 'models/gemini-2.5-flash', ...withImage },
    });
    expect(r.status).toBe(200);
    expect(r.json).toEqual({
      totalTokens: 2 + 258,
      promptTokensDetails: [
        { modality: 'TEXT', tokenCount: 2 },
        { modality: 'IMAGE', tokenCount: 258 },
      ],
    });
  });
});

describe('stream framing of a mid-stream error without alt=sse', () => {
  // Mutant: the error element of the JSON array joined with "," instead of Google's "\r\n,".
  it('the error element is separated like every other element: "\\r\\n,"', async () => {
    const fake = await start();
    fake.script({ kind: 'midstream_error' });
    const r = await post(fake, ARRAY, userText('x'));
    expect(r.status).toBe(200);
    expect(r.text.startsWith('[{')).toBe(true);
    expect(r.text).toMatch(/\}\r\n,\{"error":\{"code":500,[^\r\n]*\}\}\r\n\]$/);
    expect(r.json).toHaveLength(2);
  });
});

describe('embedding quotas', () => {
  // Mutants: embedContent / batchEmbedContents admitted under the generate quota family.
  it('embedContent and batchEmbedContents hit the EmbedContent quota ids and metrics', async () => {
    const fake = await start({ limits: { rpm: 1 } });
    const one = { content: { parts: [{ text: 'hello' }] } };
    expect((await post(fake, EMBED, one)).status).toBe(200);
    const r = await post(fake, EMBED, one);
    expect(r.status).toBe(429);
    expect(detail(r.json, 'QuotaFailure').violations[0]).toMatchObject({
      quotaMetric: 'generativelanguage.googleapis.com/embed_content_free_tier_requests',
      quotaId: 'EmbedContentRequestsPerMinutePerProjectPerModel-FreeTier',
      quotaValue: '1',
    });
    const b = await post(fake, BATCH, { requests: [one, one] });
    expect(b.status).toBe(429);
    expect(detail(b.json, 'QuotaFailure').violations[0].quotaId).toBe(
      'EmbedContentRequestsPerMinutePerProjectPerModel-FreeTier',
    );
  });

  it('batchEmbedContents alone is limited under the EmbedContent token quota', async () => {
    const fake = await start({ limits: { tpm: 2 } });
    const r = await post(fake, BATCH, {
      requests: [{ content: { parts: [{ text: 'abcdefgh' }] } }, { content: { parts: [{ text: 'ab' }] } }],
    });
    expect(r.status).toBe(429);
    expect(detail(r.json, 'QuotaFailure').violations[0]).toMatchObject({
      quotaMetric: 'generativelanguage.googleapis.com/embed_content_free_tier_input_token_count',
      quotaId: 'EmbedContentInputTokensPerModelPerMinute-FreeTier',
      quotaValue: '2',
    });
  });
});

describe('scripted 429 bodies', () => {
  // Mutant: an Embed* quotaId reported with the generate metric.
  it('an Embed quotaId gets the embed metric', async () => {
    const fake = await start();
    fake.script({ kind: 'rate_limit', quotaId: 'EmbedContentRequestsPerMinutePerProjectPerModel-FreeTier' });
    const r = await post(fake, EMBED, { content: { parts: [{ text: 'x' }] } });
    expect(r.status).toBe(429);
    expect(detail(r.json, 'QuotaFailure').violations[0]).toMatchObject({
      quotaMetric: 'generativelanguage.googleapis.com/embed_content_free_tier_requests',
      quotaId: 'EmbedContentRequestsPerMinutePerProjectPerModel-FreeTier',
      quotaDimensions: { location: 'global', model: 'gemini-embedding-001' },
    });
  });

  // Mutant: a per-day quotaId reported with the per-minute default limit (15 instead of 20).
  it('default limits follow the quota: 20 per day, 250000 tokens, or the configured limits', async () => {
    const fake = await start();
    fake.script({ kind: 'rate_limit', quotaId: 'GenerateRequestsPerDayPerProjectPerModel-FreeTier' });
    const day = await post(fake, GEN, userText('x'));
    expect(detail(day.json, 'QuotaFailure').violations[0].quotaValue).toBe('20');
    expect(day.json.error.message).toContain('limit: 20, model: gemini-2.5-flash');
    fake.script({ kind: 'rate_limit', quotaId: 'GenerateContentInputTokensPerModelPerMinute-FreeTier' });
    const tok = await post(fake, GEN, userText('x'));
    expect(detail(tok.json, 'QuotaFailure').violations[0]).toMatchObject({
      quotaMetric: 'generativelanguage.googleapis.com/generate_content_free_tier_input_token_count',
      quotaValue: '250000',
    });

    const limited = await start({ limits: { rpm: 7, rpd: 70, tpm: 700 } });
    limited.script({ kind: 'rate_limit', quotaId: 'GenerateRequestsPerDayPerProjectPerModel-FreeTier' });
    const d2 = await post(limited, GEN, userText('x'));
    expect(detail(d2.json, 'QuotaFailure').violations[0].quotaValue).toBe('70');
  });
});

describe('API key precedence', () => {
  // Mutant: ?key= preferred over the x-goog-api-key header.
  it('the x-goog-api-key header wins over ?key=', async () => {
    const fake = await start({ keys: [{ apiKey: KEY }] });
    const r = await post(fake, `${GEN}?key=not-a-known-key`, userText('x'), KEY);
    expect(r.status).toBe(200);
    expect(fake.stats.log.at(-1)?.apiKey).toBe(KEY);
    const bad = await post(fake, `${GEN}?key=${KEY}`, userText('x'), 'not-a-known-key');
    expect(bad.status).toBe(400);
    expect(detail(bad.json, 'ErrorInfo').reason).toBe('API_KEY_INVALID');
  });
});

describe('maskSecret', () => {
  // Mutant: `length <= 10` → `< 10` (a 10-character secret would show 8 of its characters).
  it('hides secrets of 10 characters or fewer entirely; longer ones keep 4 + 4 characters', () => {
    expect(maskSecret('0123456789')).toBe('***');
    expect(maskSecret('short')).toBe('***');
    expect(maskSecret('0123456789a')).toBe('0123...789a');
  });
});
