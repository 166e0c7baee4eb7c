import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Browser, chromium, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adminFetch, type Json, listKeys as listAdminKeys } from '../helpers/admin.ts';
import { poolKeyValues, type Stack, startStack } from '../helpers/stack.ts';

/** The admin dashboard (GET /admin/dashboard) in a real browser (Debian's Chromium), against a real stack. */

const CHROMIUM = '/usr/bin/chromium';
const ADMIN = 'dashboard-admin-token-0123456789';
const available = existsSync(CHROMIUM);
if (!available) {
  if (process.env.REQUIRE_REAL_SERVERS === '1')
    throw new Error(`REQUIRE_REAL_SERVERS=1 but Chromium is not installed at ${CHROMIUM}`);
  console.warn(
    `\n${'!'.repeat(100)}\n!!! SKIPPED (no ${CHROMIUM}): the dashboard e2e test. Install it with: apt-get install -y chromium\n${'!'.repeat(100)}\n`,
  );
}

function admin(s: Stack, method: string, path: string, body?: unknown) {
  return adminFetch(s, ADMIN, method, path, body);
}

const listKeys = (s: Stack) => listAdminKeys(s, ADMIN);

const FLASH = 'gemini-2.5-flash';
const LITE = 'gemini-2.5-flash-lite';
const limits = (rpm: number, rpd: number, tpm: number) => ({
  requests_per_minute: rpm,
  requests_per_day: rpd,
  tokens_per_minute: tpm,
});
/** Two projects (two keys share proj-a), with per-model limits for two models. */
function keysFile(dir: string): string {
  const v = poolKeyValues(3);
  const modelLimits = { [FLASH]: limits(10, 250, 250_000), [LITE]: limits(15, 1000, 250_000) };
  const file = join(dir, 'keys.json');
  writeFileSync(
    file,
    JSON.stringify({
      keys: [
        { id: 'key-1', api_key: v[0], project: 'proj-a', model_limits: modelLimits },
        { id: 'key-2', api_key: v[1], project: 'proj-a', model_limits: modelLimits },
        {
          id: 'key-3',
          api_key: v[2],
          project: 'proj-b',
          model_limits: { [FLASH]: limits(5, 100, 125_000), [LITE]: limits(30, 1500, 500_000) },
        },
      ],
    }),
    { mode: 0o600 },
  );
  return file;
}

async function capacityOf(s: Stack): Promise<Json[]> {
  const res = await adminFetch(s, ADMIN, 'GET', '/admin/capacity');
  expect(res.status).toBe(200);
  return ((await res.json()) as Json).models;
}

const en = (n: number) => n.toLocaleString('en-US');

async function storeEnabled(s: Stack, id: string): Promise<boolean | undefined> {
  const now = Date.now();
  const states = await s.gateway.store.keyStates(now, s.gateway.pool.calendarAt(now).day);
  return states.find((k) => k.id === id)?.enabled;
}

describe.skipIf(!available)('admin dashboard in a real browser', () => {
  let stack: Stack;
  let browser: Browser;
  let shots: string;
  /** Script errors and CSP violations seen by any page: the dashboard must run under the CSP. */
  const pageErrors: string[] = [];

  beforeAll(async () => {
    shots = mkdtempSync(join(tmpdir(), 'gg-dashboard-'));
    [stack, browser] = await Promise.all([
      startStack({
        keys: 3,
        env: { ADMIN_TOKEN: ADMIN, GEMINI_API_KEYS: '', API_KEYS_FILE: keysFile(shots) },
      }),
      chromium.launch({
        executablePath: CHROMIUM,
        args: [
          '--headless',
          '--no-sandbox',
          '--disable-gpu',
          '--disable-quic',
          '--no-first-run',
          '--disable-background-networking',
          '--disable-component-update',
          '--disable-sync',
        ],
      }),
    ]);
  });
  afterAll(async () => {
    await browser?.close();
    await stack?.close();
    if (shots) rmSync(shots, { recursive: true, force: true });
  });

  async function openPage(): Promise<Page> {
    const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
    const page = await context.newPage();
    page.setDefaultTimeout(5000);
    page.on('pageerror', (err) => pageErrors.push(`pageerror: ${err.message}`));
    page.on('console', (msg) => {
      if (msg.type() === 'error') pageErrors.push(`console: ${msg.text()}`);
    });
    const res = await page.goto(`${stack.url}/admin/dashboard`);
    expect(res?.status()).toBe(200);
    return page;
  }

  async function signIn(page: Page, token: string): Promise<void> {
    await page.getByLabel('Admin token', { exact: true }).fill(token);
    await page.getByRole('button', { name: 'Sign in' }).click();
  }

  it('is served without the token, as HTML with no data, under the CSP', async () => {
    const res = await fetch(`${stack.url}/admin/dashboard`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/html/);
    expect(res.headers.get('content-security-policy')).toContain("script-src 'self' 'unsafe-inline'");
    expect(res.headers.get('cache-control')).toBe('no-store');
    const html = await res.text();
    expect(html).toContain('<table');
    expect(html).toContain('id="capacity"');
    expect(html).not.toContain(ADMIN);
    for (const value of poolKeyValues(3)) expect(html).not.toContain(value);
    // The admin API itself stays guarded.
    expect((await fetch(`${stack.url}/admin/keys`)).status).toBe(401);
  });

  it('lists the keys masked, disables, enables and resets a key, reloads; screenshot', async () => {
    const keys = await listKeys(stack);
    expect(keys).toHaveLength(3);
    const page = await openPage();
    await signIn(page, ADMIN);

    const rows = page.locator('#keys-body tr');
    await expect.poll(() => rows.count()).toBe(3);
    await expect.poll(() => page.locator('#status-badge').textContent()).toBe('ready');

    // Capacity per model, from the configuration before any traffic: each project counted once.
    const cards = page.locator('#capacity-models .cap-model');
    await expect.poll(() => cards.count()).toBe(2);
    const flashCard = page.locator(`#capacity-models [data-model="${FLASH}"]`);
    expect(await flashCard.locator('h3').textContent()).toBe(FLASH);
    const figures = (card: typeof flashCard, window: string) =>
      Promise.all([
        card.locator(`[data-window=${window}] [data-col=left]`).textContent(),
        card.locator(`[data-window=${window}] [data-col=used]`).textContent(),
      ]);
    expect(await figures(flashCard, 'requests_day')).toEqual(['350 left', '0 used of 350']);
    expect(await figures(flashCard, 'requests_minute')).toEqual(['15 left', '0 used of 15']);
    expect(await figures(flashCard, 'tokens_minute')).toEqual(['375,000 left', '0 used of 375,000']);
    expect(await flashCard.textContent()).toContain('2 projects: proj-a, proj-b');
    expect(await page.locator('#no-capacity').isVisible()).toBe(false);
    const budgetRows = page.locator('#budgets-body tr');
    await expect.poll(() => budgetRows.count()).toBe(4);
    expect(
      await page
        .locator(`#budgets-body tr[data-project="proj-b"][data-model="${LITE}"] [data-col=rpd]`)
        .textContent(),
    ).toBe('0 / 1,500');
    // It fits a 1280-pixel-wide window without scrolling sideways.
    await page.setViewportSize({ width: 1280, height: 900 });
    // (A string: the test files are typed without the DOM library.)
    const fits = (await page.evaluate(`(() => {
      const section = document.getElementById('capacity');
      const wrap = section.querySelector('.table-wrap');
      return {
        section: section.getBoundingClientRect().width,
        page: document.documentElement.scrollWidth,
        table: wrap.scrollWidth <= wrap.clientWidth,
      };
    })()`)) as { section: number; page: number; table: boolean };
    expect(fits.section).toBeLessThanOrEqual(1280);
    expect(fits.page).toBeLessThanOrEqual(1280);
    expect(fits.table).toBe(true);
    for (const k of keys) {
      const row = page.locator(`tr[data-key-id="${k.id}"]`);
      expect(await row.locator('[data-col=key]').textContent()).toBe(k.api_key);
      expect(k.api_key).toMatch(/^AIza….{4}$/);
      expect(await row.locator('.badge').textContent()).toBe('available');
      expect(await row.locator('[data-col=rpm]').textContent()).toMatch(/^0 \/ \d/);
    }
    const html = await page.content();
    for (const value of poolKeyValues(3)) expect(html).not.toContain(value);
    expect(html).not.toContain(ADMIN);
    expect(await page.evaluate(() => sessionStorage.getItem('gemini-gateway.admin-token'))).toBe(ADMIN);

    // Disable the second key from the page: the row and the store agree.
    const target = keys[1].id as string;
    const row = page.locator(`tr[data-key-id="${target}"]`);
    await page.getByRole('button', { name: `Disable key ${target}` }).click();
    await expect.poll(() => row.locator('.badge').textContent()).toBe('disabled');
    // The page shows the API's reason: the admin's, though a key of API_KEYS_FILE is disabled in
    // the file too.
    const reason = (await listKeys(stack)).find((k) => k.id === target).reason;
    expect(reason).toBe('disabled by admin');
    expect(await row.locator('[data-col=reason]').textContent()).toBe(reason);
    expect(await storeEnabled(stack, target)).toBe(false);
    expect((await listKeys(stack)).find((k) => k.id === target).state).toBe('disabled');
    await expect.poll(() => page.locator('#summary').textContent()).toContain('Usable keys2 of 3');
    expect(await page.getByRole('button', { name: `Disable key ${target}` }).isDisabled()).toBe(true);
    expect(await page.getByRole('status').textContent()).toContain(`Key ${target} disabled`);

    // And back.
    await page.getByRole('button', { name: `Enable key ${target}` }).click();
    await expect.poll(() => row.locator('.badge').textContent()).toBe('available');
    expect(await storeEnabled(stack, target)).toBe(true);
    expect((await listKeys(stack)).find((k) => k.id === target).state).toBe('available');

    // A key resting after a 429 (retried on another key): the page shows it and "Reset rest" ends it.
    stack.fake.script({ kind: 'rate_limit', retryDelay: '3600s' }, { times: 1 });
    const gen = await fetch(`${stack.url}/v1beta/models/gemini-2.5-flash-lite:generateContent`, {
      method: 'POST',
      headers: { 'x-goog-api-key': stack.token, 'content-type': 'application/json' },
      body: JSON.stringify({ contents: [{ parts: [{ text: 'hi' }] }] }),
    });
    expect(gen.status).toBe(200);
    const resting = (await listKeys(stack)).find((k) => k.state === 'resting');
    expect(resting).toBeDefined();
    await page.getByRole('button', { name: 'Refresh now' }).click();
    const restRow = page.locator(`tr[data-key-id="${resting.id}"]`);
    await expect.poll(() => restRow.locator('.badge').textContent()).toBe('resting');

    // The capacity section: the rest shows on its (project, model) and in the model's card.
    const budgetRow = page.locator(
      `#budgets-body tr[data-project="${resting.project}"][data-model="${LITE}"]`,
    );
    await expect.poll(() => budgetRow.locator('.badge').textContent()).toBe('resting');
    expect(await budgetRow.locator('[data-col=reason]').textContent()).not.toBe('—');
    expect(
      await page
        .locator(`#budgets-body tr[data-project="${resting.project}"][data-model="${FLASH}"] .badge`)
        .textContent(),
    ).toBe('available');
    const liteCard = page.locator(`#capacity-models [data-model="${LITE}"]`);
    await expect.poll(() => liteCard.locator('[data-col=resting]').textContent()).toContain(resting.project);
    const lite = (await capacityOf(stack)).find((m) => m.model === LITE);
    expect(lite.used.requests_today).toBeGreaterThan(0);
    expect(lite.available.requests_today).toBeLessThan(lite.left.requests_today);
    const restingLeft = lite.left.requests_today - lite.available.requests_today;
    await expect
      .poll(() => figures(liteCard, 'requests_day'))
      .toEqual([
        `${en(lite.left.requests_today)} left`,
        `${en(lite.used.requests_today)} used of 2,500 · ${en(restingLeft)} left in resting projects`,
      ]);
    expect(await liteCard.locator('[data-window=requests_day] .bar').getAttribute('aria-label')).toContain(
      'in resting projects',
    );
    await page.getByRole('button', { name: `Reset the rest and circuit of key ${resting.id}` }).click();
    await expect.poll(() => restRow.locator('.badge').textContent()).toBe('available');
    expect((await listKeys(stack)).find((k) => k.id === resting.id).state).toBe('available');
    // The request's usage shows up against the key's daily limit.
    const used = (await listKeys(stack)).find((k) => k.usage.requests_today > 0 && k.id !== resting.id);
    await expect
      .poll(() => page.locator(`tr[data-key-id="${used.id}"] [data-col=rpd]`).textContent())
      .toBe(`${used.usage.requests_today} / ${used.limits.requests_per_day.toLocaleString('en-US')}`);

    // A value from the API with markup in it is shown as text, never parsed.
    const added = await admin(stack, 'POST', '/admin/keys', {
      id: 'xss',
      api_key: 'AIzaInjectedKeyValue000000000000000000',
      project: '<img id="xss-probe" src="x"><b>bold</b>',
    });
    expect(added.status).toBe(201);
    await page.getByRole('button', { name: 'Refresh now' }).click();
    await expect.poll(() => rows.count()).toBe(4);
    expect(await page.locator('tr[data-key-id="xss"] [data-col=project]').textContent()).toBe(
      '<img id="xss-probe" src="x"><b>bold</b>',
    );
    expect(await page.locator('#xss-probe').count()).toBe(0);
    expect(await page.content()).not.toContain('AIzaInjectedKeyValue000000000000000000');
    expect((await admin(stack, 'DELETE', '/admin/keys/xss')).status).toBe(200);

    // Reload configuration.
    await page.getByRole('button', { name: /^Reload configuration/ }).click();
    await expect.poll(() => page.getByRole('status').textContent()).toContain('Configuration reloaded');
    await expect.poll(() => rows.count()).toBe(3);

    const shot = join(shots, 'dashboard.png');
    await page.screenshot({ path: shot, fullPage: true });
    expect(statSync(shot).size).toBeGreaterThan(1000);
    expect(readFileSync(shot).subarray(0, 8)).toEqual(
      Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    );
    await page.context().close();
    expect(pageErrors).toEqual([]);
  });

  it('a wrong token shows an error and asks for the token again', async () => {
    const page = await openPage();
    await signIn(page, 'not-the-admin-token');
    const alert = page.getByRole('alert');
    await expect.poll(() => alert.textContent()).toContain('The admin token was rejected');
    expect(await alert.textContent()).toContain('invalid admin token');
    expect(await page.getByLabel('Admin token', { exact: true }).isVisible()).toBe(true);
    expect(await page.locator('#app').isVisible()).toBe(false);
    expect(await page.locator('#keys-body tr').count()).toBe(0);
    expect(await page.evaluate(() => sessionStorage.getItem('gemini-gateway.admin-token'))).toBeNull();

    // The right one afterwards works, and clears the error.
    await signIn(page, ADMIN);
    await expect.poll(() => page.locator('#keys-body tr').count()).toBe(3);
    expect(await alert.isVisible()).toBe(false);
    await page.context().close();
    // The 401 itself is logged by Chromium as a failed resource load; nothing else may be.
    expect(pageErrors.filter((e) => !/status of 401/.test(e))).toEqual([]);
  });
});

describe('admin dashboard without ADMIN_TOKEN', () => {
  it('does not exist', async () => {
    const s = await startStack({ keys: 1, env: { ADMIN_TOKEN: '' } });
    try {
      expect((await fetch(`${s.url}/admin/dashboard`)).status).toBe(404);
    } finally {
      await s.close();
    }
  });
});
