/**
 * Google resets daily quotas at midnight America/Los_Angeles, so the UTC hour of the reset
 * moves with daylight saving. These helpers are pure functions of an epoch-ms clock.
 */
const formatter = new Intl.DateTimeFormat('en-US', {
  timeZone: 'America/Los_Angeles',
  hourCycle: 'h23',
  year: 'numeric',
  month: '2-digit',
  day: '2-digit',
  hour: '2-digit',
  minute: '2-digit',
});

interface Wall {
  year: number;
  month: number;
  day: number;
  hour: number;
  minute: number;
}

function wallClock(ms: number): Wall {
  const w: Record<string, number> = {};
  for (const p of formatter.formatToParts(ms)) if (p.type !== 'literal') w[p.type] = Number(p.value);
  return { year: w.year!, month: w.month!, day: w.day!, hour: w.hour!, minute: w.minute! };
}

/** Pacific calendar day of `ms` as YYYY-MM-DD. */
export function pacificDay(ms: number): string {
  const w = wallClock(ms);
  return `${w.year}-${String(w.month).padStart(2, '0')}-${String(w.day).padStart(2, '0')}`;
}

/** Epoch ms of the next Pacific midnight strictly after `ms`. */
export function nextPacificMidnight(ms: number): number {
  const w = wallClock(ms);
  // Pacific is UTC-8 (PST) or UTC-7 (PDT); DST switches at 02:00, so midnight exists exactly once.
  const nextDayUtcMidnight = Date.UTC(w.year, w.month - 1, w.day + 1);
  for (const offsetHours of [8, 7]) {
    const candidate = nextDayUtcMidnight + offsetHours * 3_600_000;
    const c = wallClock(candidate);
    if (c.hour === 0 && c.minute === 0) return candidate;
  }
  throw new Error('unreachable: no Pacific midnight found');
}

/** Memoizes day/next-midnight for the current Pacific day, so the hot path does no Intl work. */
export class PacificCalendar {
  private dayStart = 0;
  private dayEnd = 0;
  private day = '';

  at(ms: number): { day: string; nextDayMs: number } {
    if (ms < this.dayStart || ms >= this.dayEnd) {
      this.day = pacificDay(ms);
      this.dayEnd = nextPacificMidnight(ms);
      // The day began at the previous midnight; any ms before dayEnd with the same label is inside it.
      this.dayStart = ms;
    }
    return { day: this.day, nextDayMs: this.dayEnd };
  }
}
