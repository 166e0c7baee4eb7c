/**
 * The budgets of batches and long-running operations, apart from the interactive ones.
 *
 * Google counts the Batch API apart from interactive traffic (its own limits: concurrent batches
 * and enqueued tokens per model), so creating a batch must not take a request from the model's
 * interactive requests-per-minute budget, and polling a job is no generation at all. Budgets are
 * keyed by model name in the store; these names hold a colon, which no model name has
 * (MODEL_NAME), so they never meet a model's budget:
 *
 * - `batch:<model>`: creating a batch of that model (`:batchGenerateContent`,
 *   `:asyncBatchEmbedContent`), per (project, model) like any budget; tokens are not reserved
 *   (Google counts a batch's tokens as enqueued tokens, not tokens per minute).
 * - `batch:manage`: getting, listing, cancelling and deleting batches (per project).
 * - `operations:poll`: polling long-running operations (Veo) (per project).
 *
 * Their limits are the key's `limits` (DEFAULT_RPM / DEFAULT_RPD / DEFAULT_TPM unless the key or
 * the keys file's defaults state others); `model_limits` may name them to set their own.
 */
import { normalizeModel } from './models.ts';

export const BATCH_MANAGE_BUDGET = 'batch:manage';
export const OPERATION_POLL_BUDGET = 'operations:poll';
const BATCH_PREFIX = 'batch:';

/** The budget a batch of `model` is created under. */
export function batchBudget(model: string): string {
  return `${BATCH_PREFIX}${normalizeModel(model)}`;
}

/** A budget name of this module (what a keys file's model_limits may name besides models). */
export const JOB_BUDGET_NAME = /^(?:batch:[A-Za-z0-9][A-Za-z0-9._-]{0,127}|operations:poll)$/;

/**
 * A key restricted to some models (`models` in the keys file) serves the batches of those
 * models and the job budgets too: the store matches budgets against the list by name.
 */
export function withJobBudgets(models: readonly string[]): string[] {
  if (models.length === 0) return [];
  return [...models, ...models.map(batchBudget), BATCH_MANAGE_BUDGET, OPERATION_POLL_BUDGET];
}
