import { describe, expect, it } from 'vitest';
import { fallbacksFor, parseFallbacks } from '../../../src/pool/fallback.ts';

describe('MODEL_FALLBACKS', () => {
  it('each model of a chain falls back to the models after it', () => {
    const chains = parseFallbacks('gemini-2.5-pro>gemini-2.5-flash>models/gemini-2.5-flash-lite, a>b');
    expect(Object.fromEntries(chains)).toEqual({
      'gemini-2.5-pro': ['gemini-2.5-flash', 'gemini-2.5-flash-lite'],
      'gemini-2.5-flash': ['gemini-2.5-flash-lite'],
      a: ['b'],
    });
  });

  it('refuses a chain of one model, a model twice, and names that are not model names', () => {
    expect(() => parseFallbacks('gemini-2.5-pro')).toThrow(/chain/);
    expect(() => parseFallbacks('a>b>a')).toThrow(/twice/);
    expect(() => parseFallbacks('a>b c')).toThrow(/chain/);
    expect(() => parseFallbacks('a>b,a>c')).toThrow(/two chains/);
  });

  it('a request gets fallbacks only when it asks (or the default does), for a model with a chain', () => {
    const chains = parseFallbacks('p>f>l');
    expect(fallbacksFor(chains, 'p', 'on', false)).toEqual(['f', 'l']);
    expect(fallbacksFor(chains, 'models/p', 'true', false)).toEqual(['f', 'l']);
    expect(fallbacksFor(chains, 'p', undefined, false)).toBeUndefined();
    expect(fallbacksFor(chains, 'p', undefined, true)).toEqual(['f', 'l']);
    expect(fallbacksFor(chains, 'p', 'off', true)).toBeUndefined();
    expect(fallbacksFor(chains, 'l', 'on', false)).toBeUndefined();
    expect(fallbacksFor(new Map(), 'p', 'on', true)).toBeUndefined();
  });
});
