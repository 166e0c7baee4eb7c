/**
 * The pool's capacity per model, as Google counts quota: per (project, model). Pure: it reads
 * the key configuration (this instance's, in configuration order), the keys' runtime states and
 * the store's (project, model) budget states, and computes, per model:
 *
 * - **total**: the sum of the limits of every project that can serve the model, i.e. that has at
 *   least one key enabled in configuration and not disabled at runtime whose `models` (empty =
 *   all) include it. A project's limits for a model are its first key's (configuration order,
 *   enabled or not), as the stores count them. A project counts once, however many keys it has.
 * - **used**: the same projects' use this minute / today, from the budget states.
 * - **left**: per project `max(0, limit − used)`, summed: what the pool still admits in the
 *   current minute / Pacific day once every rest has ended.
 * - **available**: `left` without the projects resting on the model now: what it admits now.
 * - **resting**: the projects resting on the model, with until when and why.
 *
 * Models listed: every model named in some key's modelLimits, and every model with a budget
 * state (used at some point). Requests for no model (model listing, budget model '') are not a
 * model's capacity and are left out. A project known only from the store (keys of another
 * instance) is not counted: capacity is what this instance's configuration can serve.
 */
import { type KeyConfig, limitsFor } from '../config/keys.ts';
import type { BudgetLimits, BudgetState, KeyState } from '../store/types.ts';

/** Use of one budget, or what is left of it, per window. */
export interface BudgetUse {
  requestsThisMinute: number;
  requestsToday: number;
  tokensThisMinute: number;
}

export interface ProjectCapacity {
  project: string;
  /** Keys of the project that can serve the model now (enabled, not disabled, model allowed). */
  keys: number;
  limits: BudgetLimits;
  used: BudgetUse;
  /** max(0, limit − used) per window, rest or not. */
  left: BudgetUse;
  resting: boolean;
  restUntilMs: number | null;
  restReason: string | null;
}

export interface ModelCapacity {
  model: string;
  /** Sum of the counted projects' limits. */
  total: BudgetLimits;
  used: BudgetUse;
  left: BudgetUse;
  /** `left` of the projects not resting on this model now. */
  available: BudgetUse;
  /** Projects that count toward the total, in configuration order. */
  projects: ProjectCapacity[];
  /** The counted projects resting on this model now. */
  resting: Array<{ project: string; untilMs: number; reason: string | null }>;
}

export interface CapacityInput {
  /** This instance's key configuration, in configuration order. */
  configs: readonly KeyConfig[];
  /** Runtime key states (store.keyStates): a key whose state is not enabled does not count. */
  keyStates: readonly KeyState[];
  /** store.budgetStates(nowMs, day). */
  budgets: readonly BudgetState[];
  nowMs: number;
}

const zeroUse = (): BudgetUse => ({ requestsThisMinute: 0, requestsToday: 0, tokensThisMinute: 0 });

function addUse(to: BudgetUse, u: BudgetUse): void {
  to.requestsThisMinute += u.requestsThisMinute;
  to.requestsToday += u.requestsToday;
  to.tokensThisMinute += u.tokensThisMinute;
}

function toBudget(key: KeyConfig, model: string): BudgetLimits {
  const l = limitsFor(key, model);
  return { rpm: l.requestsPerMinute, rpd: l.requestsPerDay, tpm: l.tokensPerMinute };
}

/** Every model the capacity lists: named in some key's modelLimits or with a budget state; '' left out. */
export function capacityModels(configs: readonly KeyConfig[], budgets: readonly BudgetState[]): string[] {
  const models = new Set<string>();
  for (const k of configs) for (const m of Object.keys(k.modelLimits)) models.add(m);
  for (const b of budgets) models.add(b.model);
  models.delete('');
  return [...models].sort();
}

/** The pool's capacity for every listed model, sorted by model name. */
export function computeCapacity(input: CapacityInput): ModelCapacity[] {
  const { configs, nowMs } = input;
  const stateOf = new Map(input.keyStates.map((s) => [s.id, s]));
  const budgetOf = new Map(input.budgets.map((b) => [budgetKey(b.project, b.model), b]));
  // Each project's first key in configuration order: whose limits the stores use.
  const firstKey = new Map<string, KeyConfig>();
  for (const k of configs) if (!firstKey.has(k.project)) firstKey.set(k.project, k);
  const usable = configs.filter((k) => k.enabled && stateOf.get(k.id)?.enabled !== false);

  return capacityModels(configs, input.budgets).map((model) => {
    const serving = new Map<string, number>();
    for (const k of usable) {
      if (k.models.length > 0 && !k.models.includes(model)) continue;
      serving.set(k.project, (serving.get(k.project) ?? 0) + 1);
    }
    const total: BudgetLimits = { rpm: 0, rpd: 0, tpm: 0 };
    const used = zeroUse();
    const left = zeroUse();
    const available = zeroUse();
    const projects: ProjectCapacity[] = [];
    const resting: ModelCapacity['resting'] = [];
    for (const [project, keys] of serving) {
      const limits = toBudget(firstKey.get(project)!, model);
      const b = budgetOf.get(budgetKey(project, model));
      const use: BudgetUse = b
        ? {
            requestsThisMinute: b.requestsThisMinute,
            requestsToday: b.requestsToday,
            tokensThisMinute: b.tokensThisMinute,
          }
        : zeroUse();
      const projectLeft: BudgetUse = {
        requestsThisMinute: Math.max(0, limits.rpm - use.requestsThisMinute),
        requestsToday: Math.max(0, limits.rpd - use.requestsToday),
        tokensThisMinute: Math.max(0, limits.tpm - use.tokensThisMinute),
      };
      const restUntilMs = b?.restUntilMs != null && b.restUntilMs > nowMs ? b.restUntilMs : null;
      const restReason = restUntilMs !== null ? (b?.restReason ?? null) : null;
      total.rpm += limits.rpm;
      total.rpd += limits.rpd;
      total.tpm += limits.tpm;
      addUse(used, use);
      addUse(left, projectLeft);
      if (restUntilMs === null) addUse(available, projectLeft);
      else resting.push({ project, untilMs: restUntilMs, reason: restReason });
      projects.push({
        project,
        keys,
        limits,
        used: use,
        left: projectLeft,
        resting: restUntilMs !== null,
        restUntilMs,
        restReason,
      });
    }
    return { model, total, used, left, available, projects, resting };
  });
}

function budgetKey(project: string, model: string): string {
  return `${project}\n${model}`;
}
