import { createGeminiProvider } from './gemini.ts';
import { createOpenAIProvider } from './openai.ts';
import { createStabilityProvider } from './stability.ts';
import type { ImageProvider, ProviderDeps, ProviderFactory } from './types.ts';

/**
 * Every image provider, by AI_PROVIDER name. A new provider is one file exporting a
 * ProviderFactory plus one line here.
 */
const PROVIDERS: Readonly<Record<string, ProviderFactory>> = {
  gemini: createGeminiProvider,
  openai: createOpenAIProvider,
  stability: createStabilityProvider,
};

export function providerNames(): string[] {
  return Object.keys(PROVIDERS);
}

/** Throws (at start-up) for an unknown name or a provider missing its settings. */
export function createImageProvider(name: string, deps: ProviderDeps): ImageProvider {
  const factory = Object.hasOwn(PROVIDERS, name) ? PROVIDERS[name] : undefined;
  if (!factory)
    throw new Error(`AI_PROVIDER: unknown provider "${name}" (known: ${providerNames().join(', ')})`);
  return factory(deps);
}
