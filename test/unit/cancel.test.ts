import { describe, expect, it, vi } from 'vitest';
import { Cancellation, onAbort, signalOf } from '../../src/util/cancel.ts';

describe('Cancellation', () => {
  it('calls each subscriber once with the reason, and not after it unsubscribed', () => {
    const c = new Cancellation();
    const first = vi.fn();
    const second = vi.fn();
    const gone = vi.fn();
    c.onAbort(first);
    const unsubscribe = c.onAbort(gone);
    c.onAbort(second);
    unsubscribe();
    const reason = new Error('deadline');
    c.abort(reason);
    c.abort(new Error('again'));
    expect(c.aborted).toBe(true);
    expect(c.reason).toBe(reason);
    expect(first).toHaveBeenCalledTimes(1);
    expect(first).toHaveBeenCalledWith(reason);
    expect(second).toHaveBeenCalledTimes(1);
    expect(gone).not.toHaveBeenCalled();
  });

  it('does not call a subscriber that comes after the abort (callers check aborted first)', () => {
    const c = new Cancellation();
    c.abort('x');
    const late = vi.fn();
    c.onAbort(late)();
    expect(late).not.toHaveBeenCalled();
  });

  it('makes an AbortSignal only when asked, which follows the abort before or after it was made', () => {
    const before = new Cancellation();
    const signal = before.signal;
    expect(before.signal).toBe(signal);
    expect(signal.aborted).toBe(false);
    before.abort('client gone');
    expect(signal.aborted).toBe(true);
    expect(signal.reason).toBe('client gone');

    const after = new Cancellation();
    after.abort('deadline');
    expect(after.signal.aborted).toBe(true);
    expect(after.signal.reason).toBe('deadline');
  });
});

describe('onAbort and signalOf', () => {
  it('subscribe to a plain AbortSignal the same way, unsubscribe included', () => {
    const controller = new AbortController();
    const called = vi.fn();
    const gone = vi.fn();
    onAbort(controller.signal, called);
    onAbort(controller.signal, gone)();
    controller.abort('why');
    expect(called).toHaveBeenCalledWith('why');
    expect(gone).not.toHaveBeenCalled();
    const late = vi.fn();
    onAbort(controller.signal, late);
    expect(late).not.toHaveBeenCalled();
  });

  it('give the AbortSignal of either kind', () => {
    const controller = new AbortController();
    expect(signalOf(controller.signal)).toBe(controller.signal);
    const c = new Cancellation();
    expect(signalOf(c)).toBe(c.signal);
    expect(signalOf(undefined)).toBeUndefined();
  });
});
