import { Counter, Histogram, Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { CountOf, HotMetric } from '../../src/observability/hot-metric.ts';

/** HotMetric must render exactly what prom-client's own metric renders for the same observations. */
describe('HotMetric', () => {
  const buckets = [0.01, 0.1, 1, 10];
  const observations: Array<[string, string, number]> = [
    ['GET', '200', 0.005],
    ['GET', '200', 0.01], // on a bound: counts in that bucket (le is "less or equal")
    ['GET', '200', 0.5],
    ['POST', '500', 42], // above every bound: only +Inf
    ['GET', '200', 3],
  ];

  it('renders a histogram as prom-client does', async () => {
    const ours = new Registry();
    const theirs = new Registry();
    const hot = new HotMetric(ours, {
      name: 'h_seconds',
      help: 'h',
      labelNames: ['method', 'status'],
      buckets,
    });
    const reference = new Histogram({
      name: 'h_seconds',
      help: 'h',
      labelNames: ['method', 'status'],
      buckets,
      registers: [theirs],
    });
    for (const [m, s, v] of observations) {
      hot.series(m, s).observe(v);
      reference.observe({ method: m, status: s }, v);
    }
    expect(await ours.metrics()).toBe(await theirs.metrics());
    expect(await ours.metrics()).toContain('h_seconds_bucket{le="0.01",method="GET",status="200"} 2');
  });

  it('renders a counter as prom-client does, and an unlabelled histogram', async () => {
    const ours = new Registry();
    const theirs = new Registry();
    const hot = new HotMetric(ours, { name: 'c_total', help: 'c', labelNames: ['method', 'status'] });
    const reference = new Counter({
      name: 'c_total',
      help: 'c',
      labelNames: ['method', 'status'],
      registers: [theirs],
    });
    const hotWait = new HotMetric(ours, { name: 'w_seconds', help: 'w', buckets: [0, 1] });
    const refWait = new Histogram({ name: 'w_seconds', help: 'w', buckets: [0, 1], registers: [theirs] });
    for (const [m, s, v] of observations) {
      hot.series(m, s).inc();
      reference.inc({ method: m, status: s });
      hotWait.series().observe(v);
      refWait.observe(v);
    }
    expect(await ours.metrics()).toBe(await theirs.metrics());
    expect(await ours.metrics()).toContain('c_total{method="GET",status="200"} 4');
  });

  it("renders a histogram's counts as a counter of their own, as prom-client renders that counter", async () => {
    const ours = new Registry();
    const theirs = new Registry();
    const hot = new HotMetric(ours, {
      name: 'd_seconds',
      help: 'd',
      labelNames: ['method', 'status'],
      buckets,
    });
    new CountOf(ours, hot, { name: 'd_total', help: 'c' });
    new Histogram({
      name: 'd_seconds',
      help: 'd',
      labelNames: ['method', 'status'],
      buckets,
      registers: [theirs],
    });
    const reference = new Counter({
      name: 'd_total',
      help: 'c',
      labelNames: ['method', 'status'],
      registers: [theirs],
    });
    const refHistogram = theirs.getSingleMetric('d_seconds') as Histogram<'method' | 'status'>;
    for (const [m, s, v] of observations) {
      hot.series(m, s).observe(v);
      refHistogram.observe({ method: m, status: s }, v);
      reference.inc({ method: m, status: s });
    }
    expect(await ours.metrics()).toBe(await theirs.metrics());
    expect(await ours.metrics()).toContain('d_total{method="POST",status="500"} 1');
    ours.resetMetrics();
    expect(await ours.metrics()).not.toContain('d_total{');
  });

  it('ignores a value that is not a number instead of poisoning the sum', async () => {
    const registry = new Registry();
    const hot = new HotMetric(registry, { name: 'x_seconds', help: 'x', buckets: [1] });
    hot.series().observe(Number.NaN);
    hot.series().observe(0.5);
    const text = await registry.metrics();
    expect(text).toContain('x_seconds_sum 0.5');
    expect(text).toContain('x_seconds_count 1');
  });
});
