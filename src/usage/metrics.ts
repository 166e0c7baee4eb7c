import { Counter, type Registry } from 'prom-client';
import { roundUsd } from './prices.ts';
import type { MetricTotals, UsageRecorder } from './recorder.ts';

/**
 * Usage and cost per client and model for Prometheus, from this process's counts since it started
 * (counters: sum them over instances). Cardinality is bounded: the first 50 clients and the first
 * 20 models seen get their own label values, later ones count as "other" (UsageRecorder's caps),
 * so each metric has at most 51 × 21 label pairs (× 4 kinds for the tokens).
 */
export function registerUsageMetrics(registry: Registry, usage: UsageRecorder): void {
  let cached: { at: number; value: MetricTotals[] } | null = null;
  // One computation per scrape, shared by the counters below.
  const totals = (): MetricTotals[] => {
    const now = Date.now();
    if (!cached || now - cached.at > 250) cached = { at: now, value: usage.metrics() };
    return cached.value;
  };
  const registers = [registry];
  new Counter({
    name: 'gateway_usage_requests_total',
    help: 'Calls that reached the key pool, by client and model (clients past the first 50 and models past the first 20 are "other").',
    labelNames: ['client', 'model'],
    registers,
    collect() {
      this.reset();
      for (const t of totals()) this.inc({ client: t.client, model: t.model }, t.counts.requests);
    },
  });
  new Counter({
    name: 'gateway_usage_errors_total',
    help: 'Calls answered with an error or streams that broke, by client and model.',
    labelNames: ['client', 'model'],
    registers,
    collect() {
      this.reset();
      for (const t of totals()) this.inc({ client: t.client, model: t.model }, t.counts.errors);
    },
  });
  new Counter({
    name: 'gateway_usage_tokens_total',
    help: 'Tokens as Google reported them (usageMetadata), by client, model and kind: prompt, output, cached (part of prompt), thought.',
    labelNames: ['client', 'model', 'kind'],
    registers,
    collect() {
      this.reset();
      for (const t of totals()) {
        const l = { client: t.client, model: t.model };
        this.inc({ ...l, kind: 'prompt' }, t.counts.prompt_tokens);
        this.inc({ ...l, kind: 'output' }, t.counts.output_tokens);
        this.inc({ ...l, kind: 'cached' }, t.counts.cached_tokens);
        this.inc({ ...l, kind: 'thought' }, t.counts.thought_tokens);
      }
    },
  });
  new Counter({
    name: 'gateway_usage_cost_usd_total',
    help: 'Cost in USD from the price table (GET /admin/usage/prices), by client and model; models without a price add 0.',
    labelNames: ['client', 'model'],
    registers,
    collect() {
      this.reset();
      for (const t of totals()) this.inc({ client: t.client, model: t.model }, roundUsd(t.costUsd));
    },
  });
}
