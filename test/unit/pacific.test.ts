import { describe, expect, it } from 'vitest';
import { nextPacificMidnight, PacificCalendar, pacificDay } from '../../src/util/pacific.ts';

describe('Pacific day boundaries (daily quota reset)', () => {
  it('winter (PST, UTC-8): midnight is 08:00 UTC', () => {
    const t = Date.UTC(2026, 0, 15, 20, 0); // 12:00 PST
    expect(pacificDay(t)).toBe('2026-01-15');
    expect(new Date(nextPacificMidnight(t)).toISOString()).toBe('2026-01-16T08:00:00.000Z');
  });

  it('summer (PDT, UTC-7): midnight is 07:00 UTC', () => {
    const t = Date.UTC(2026, 6, 4, 6, 59, 59); // 23:59:59 PDT on July 3
    expect(pacificDay(t)).toBe('2026-07-03');
    expect(new Date(nextPacificMidnight(t)).toISOString()).toBe('2026-07-04T07:00:00.000Z');
  });

  it('spring-forward day (2026-03-08 has 23 hours)', () => {
    const t = Date.UTC(2026, 2, 8, 9, 0); // 01:00 PST on March 8
    expect(pacificDay(t)).toBe('2026-03-08');
    // The next midnight is in PDT.
    expect(new Date(nextPacificMidnight(t)).toISOString()).toBe('2026-03-09T07:00:00.000Z');
    // The evening before: next midnight is still PST.
    expect(new Date(nextPacificMidnight(Date.UTC(2026, 2, 8, 7, 0))).toISOString()).toBe(
      '2026-03-08T08:00:00.000Z',
    );
  });

  it('fall-back day (2026-11-01 has 25 hours)', () => {
    const t = Date.UTC(2026, 10, 1, 8, 30); // 01:30 PDT, first pass
    expect(pacificDay(t)).toBe('2026-11-01');
    expect(new Date(nextPacificMidnight(t)).toISOString()).toBe('2026-11-02T08:00:00.000Z');
    const later = Date.UTC(2026, 10, 1, 9, 30); // 01:30 PST, second pass: same day
    expect(pacificDay(later)).toBe('2026-11-01');
    expect(nextPacificMidnight(later)).toBe(nextPacificMidnight(t));
  });

  it('exactly at midnight the next reset is a day later', () => {
    const midnight = Date.UTC(2026, 10, 25, 8, 0);
    expect(pacificDay(midnight)).toBe('2026-11-25');
    expect(nextPacificMidnight(midnight)).toBe(Date.UTC(2026, 10, 26, 8, 0));
    expect(pacificDay(midnight - 1)).toBe('2026-11-24');
  });

  it('the memoized calendar agrees across a day change', () => {
    const cal = new PacificCalendar();
    const before = Date.UTC(2026, 10, 25, 7, 59, 59);
    expect(cal.at(before)).toEqual({ day: '2026-11-24', nextDayMs: Date.UTC(2026, 10, 25, 8) });
    expect(cal.at(before + 1000)).toEqual({ day: '2026-11-25', nextDayMs: Date.UTC(2026, 10, 26, 8) });
  });
});

describe('PacificCalendar when the clock steps back', () => {
  it('a time before the memoized day gets its own day and next midnight', () => {
    const cal = new PacificCalendar();
    const nextDay = Date.UTC(2026, 10, 26, 9, 0); // 01:00 PST on Nov 26
    expect(cal.at(nextDay).day).toBe('2026-11-26');
    const before = Date.UTC(2026, 10, 26, 7, 0); // 23:00 PST on Nov 25
    expect(cal.at(before)).toEqual({ day: '2026-11-25', nextDayMs: Date.UTC(2026, 10, 26, 8) });
  });
});
