import type { Metric, Registry } from 'prom-client';

/**
 * A counter or histogram for the per-request path. prom-client's own `inc`/`observe` build a
 * label object and a label hash string on every call (even through `labels()` children): an
 * allocation and a hash per request for a series that is already known. Here each label
 * combination's series is looked up in nested maps keyed by the label values themselves and
 * updated in place; the registry renders it on scrape through the same `get()` shape its own
 * metrics return, so the exposition format stays prom-client's.
 */
export class HotMetric {
  readonly name: string;
  readonly help: string;
  readonly type: 'counter' | 'histogram';
  /** prom-client's cluster aggregation, for completeness of the metric shape. */
  readonly aggregator = 'sum';
  private readonly labelNames: readonly string[];
  private readonly bounds: readonly number[];
  private readonly root = new Map<string, Map<string, Map<string, Series>>>();
  private readonly all: Series[] = [];

  constructor(
    registry: Registry,
    options: { name: string; help: string; labelNames?: readonly string[]; buckets?: readonly number[] },
  ) {
    if ((options.labelNames?.length ?? 0) > 3) throw new Error(`${options.name}: at most 3 labels`);
    this.name = options.name;
    this.help = options.help;
    this.type = options.buckets ? 'histogram' : 'counter';
    this.labelNames = options.labelNames ?? [];
    this.bounds = options.buckets ? [...options.buckets].sort((a, b) => a - b) : [];
    // The registry reads only name, type and get() (and reset() on resetMetrics()).
    registry.registerMetric(this as unknown as Metric);
  }

  /** The series of one label combination, in labelNames order. */
  series(a = '', b = '', c = ''): Series {
    let byB = this.root.get(a);
    if (!byB) {
      byB = new Map();
      this.root.set(a, byB);
    }
    let byC = byB.get(b);
    if (!byC) {
      byC = new Map();
      byB.set(b, byC);
    }
    let s = byC.get(c);
    if (!s) {
      const labels: Record<string, string> = {};
      [a, b, c].slice(0, this.labelNames.length).forEach((v, i) => {
        labels[this.labelNames[i]!] = v;
      });
      s = new Series(labels, this.bounds);
      byC.set(c, s);
      this.all.push(s);
    }
    return s;
  }

  reset(): void {
    this.root.clear();
    this.all.length = 0;
  }

  /** Every label combination seen so far. */
  seriesList(): readonly Series[] {
    return this.all;
  }

  async get(): Promise<MetricSnapshot> {
    const values: SampleValue[] = [];
    for (const s of this.all) {
      if (this.type === 'counter') {
        values.push({ labels: s.labels, value: s.count });
        continue;
      }
      let cumulative = 0;
      this.bounds.forEach((le, i) => {
        cumulative += s.buckets[i]!;
        values.push({ labels: { le, ...s.labels }, value: cumulative, metricName: `${this.name}_bucket` });
      });
      values.push({ labels: { le: '+Inf', ...s.labels }, value: s.count, metricName: `${this.name}_bucket` });
      values.push({ labels: s.labels, value: s.sum, metricName: `${this.name}_sum` });
      values.push({ labels: s.labels, value: s.count, metricName: `${this.name}_count` });
    }
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values };
  }
}

/**
 * A counter read off a HotMetric histogram's series counts at scrape time: a request counter
 * and a duration histogram with the same labels then cost one series lookup per request.
 */
export class CountOf {
  readonly name: string;
  readonly help: string;
  readonly type = 'counter';
  readonly aggregator = 'sum';
  private readonly histogram: HotMetric;

  constructor(registry: Registry, histogram: HotMetric, options: { name: string; help: string }) {
    this.name = options.name;
    this.help = options.help;
    this.histogram = histogram;
    registry.registerMetric(this as unknown as Metric);
  }

  /** Nothing of its own to reset: it shows the histogram's counts. */
  reset(): void {}

  async get(): Promise<MetricSnapshot> {
    const values = this.histogram.seriesList().map((s) => ({ labels: s.labels, value: s.count }));
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values };
  }
}

/** What prom-client's registry reads from a metric on scrape. */
interface MetricSnapshot {
  name: string;
  help: string;
  type: string;
  aggregator: string;
  values: SampleValue[];
}

interface SampleValue {
  labels: Record<string, string | number>;
  value: number;
  metricName?: string;
}

/** One label combination: a count, and for histograms the sum and per-bucket counts. */
export class Series {
  count = 0;
  sum = 0;
  readonly buckets: Float64Array;
  readonly labels: Readonly<Record<string, string>>;
  private readonly bounds: readonly number[];

  constructor(labels: Record<string, string>, bounds: readonly number[]) {
    this.labels = labels;
    this.bounds = bounds;
    this.buckets = new Float64Array(bounds.length);
  }

  inc(): void {
    this.count += 1;
  }

  observe(value: number): void {
    if (!Number.isFinite(value)) return;
    this.count += 1;
    this.sum += value;
    const bounds = this.bounds;
    for (let i = 0; i < bounds.length; i++) {
      if (value <= bounds[i]!) {
        this.buckets[i]! += 1;
        return;
      }
    }
  }
}
