import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type Browser, chromium, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { zeroCounts } from '../../src/usage/counts.ts';
import { adminFetch, type Json, listKeys as listAdminKeys } from '../helpers/admin.ts';
import { poolKeyValues, type Stack, startStack, TEST_TOKEN } from '../helpers/stack.ts';

/** The admin dashboard (GET /admin/dashboard) in a real browser (Debian's Chromium), against a real stack. */

const CHROMIUM = '/usr/bin/chromium';
const ADMIN = 'dashboard-admin-token-0123456789';
const ALICE = 'dashboard-alice-token-0123456789';
const BOB = 'dashboard-bob-token-0123456789ab';
/** Screenshots of a test run (gitignored). */
const SCREENSHOTS = fileURLToPath(new URL('../../.tmp/screenshots/', import.meta.url));
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

/** A native generateContent call with a client token. */
function callGenerate(s: Stack, token: string, model: string, text: string): Promise<Response> {
  return fetch(`${s.url}/v1beta/models/${model}:generateContent`, {
    method: 'POST',
    headers: { 'x-goog-api-key': token, 'content-type': 'application/json' },
    body: JSON.stringify({ contents: [{ parts: [{ text }] }] }),
  });
}

/** USD as the page writes it. */
function usdText(v: number): string {
  if (v === 0) return '$0';
  if (v >= 1) return `$${v.toLocaleString('en-US', { minimumFractionDigits: 2, maximumFractionDigits: 2 })}`;
  if (v >= 0.01) return `$${v.toFixed(4)}`;
  return `$${v.toFixed(6)}`;
}

/** The page and every visible table fit the 1280-px window: nothing scrolls sideways. */
async function expectFits(page: Page): Promise<void> {
  // (A string: the test files are typed without the DOM library.)
  const r = (await page.evaluate(`(() => {
    const wraps = [...document.querySelectorAll('.table-wrap')].filter((w) => w.offsetParent !== null);
    return {
      width: window.innerWidth,
      page: document.documentElement.scrollWidth,
      tables: wraps.map((w) => ({ id: w.querySelector('table').id, scroll: w.scrollWidth, client: w.clientWidth })),
    };
  })()`)) as { width: number; page: number; tables: Array<{ id: string; scroll: number; client: number }> };
  expect(r.width).toBe(1280);
  expect(r.page).toBeLessThanOrEqual(1280);
  expect(r.tables.length).toBeGreaterThanOrEqual(3);
  for (const t of r.tables)
    expect(t.scroll, `${t.id} is ${t.scroll} px wide in ${t.client} px`).toBeLessThanOrEqual(t.client);
}

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
        env: {
          ADMIN_TOKEN: ADMIN,
          GEMINI_API_KEYS: '',
          API_KEYS_FILE: keysFile(shots),
          CLIENT_API_KEYS_MAP: `${TEST_TOKEN}:tests,${ALICE}:alice,${BOB}:bob`,
          CACHE_ENABLED: 'false',
        },
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

  async function openPage(width = 1400): Promise<Page> {
    const context = await browser.newContext({ viewport: { width, height: 900 } });
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
    // Its script and styles are files: no inline ones are allowed (Swagger UI's pages still need them).
    const csp = res.headers.get('content-security-policy');
    expect(csp).toContain("script-src 'self';");
    expect(csp).toContain("style-src 'self';");
    expect(csp).not.toContain('unsafe-inline');
    expect(res.headers.get('cache-control')).toBe('no-store');
    const html = await res.text();
    expect(html).toContain('<table');
    expect(html).toContain('id="capacity"');
    expect(html).not.toContain(ADMIN);
    for (const value of poolKeyValues(3)) expect(html).not.toContain(value);
    expect(html).not.toMatch(/<script>|<style>|style=|\son[a-z]+=/);
    // The script and the stylesheet it links, under the page's path, without the token either.
    for (const [path, type] of [
      ['/admin/dashboard/dashboard.js', 'text/javascript'],
      ['/admin/dashboard/dashboard.css', 'text/css'],
    ]) {
      expect(html).toContain(`"${path}"`);
      const asset = await fetch(`${stack.url}${path}`);
      expect(asset.status, path).toBe(200);
      expect(asset.headers.get('content-type')).toBe(`${type}; charset=utf-8`);
      expect(asset.headers.get('cache-control')).toBe('no-store');
      expect(asset.headers.get('x-content-type-options')).toBe('nosniff');
      expect((await asset.text()).length).toBeGreaterThan(1000);
    }
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
      // The project's use, all models together: no per-model limit to set it against.
      expect(await row.locator('[data-col=rpm]').textContent()).toBe('0');
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
    // The request's usage shows up in its key's row (its project, all models together) and against
    // the model's daily limit in the budgets table (its project and model).
    const used = (await listKeys(stack)).find((k) => k.usage.requests_today > 0 && k.id !== resting.id);
    await expect
      .poll(() => page.locator(`tr[data-key-id="${used.id}"] [data-col=rpd]`).textContent())
      .toBe(en(used.usage.requests_today));
    const budgets = ((await (await admin(stack, 'GET', '/admin/budgets')).json()) as Json).budgets;
    const usedBudget = budgets.find((b: Json) => b.project === used.project && b.model === LITE);
    expect(usedBudget.usage.requests_today).toBeGreaterThan(0);
    await expect
      .poll(() =>
        page
          .locator(`#budgets-body tr[data-project="${used.project}"][data-model="${LITE}"] [data-col=rpd]`)
          .textContent(),
      )
      .toBe(`${en(usedBudget.usage.requests_today)} / ${en(usedBudget.limits.requests_per_day)}`);

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

    await mkdir(SCREENSHOTS, { recursive: true });
    const shot = join(SCREENSHOTS, 'dashboard-keys.png');
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

  it('draws usage over time per client and per model, cost per client, and manages clients; fits 1280 px; screenshots', async () => {
    const s = stack;
    const usage = s.gateway.deps.usage!;
    // Only this test's pages count (the wrong-token test leaves its expected 401s behind).
    pageErrors.length = 0;
    // Real traffic of two clients through the gateway: native unary and stream, OpenAI chat.
    for (const text of ['Hello from alice', 'How is the weather in Hanoi today, alice asks']) {
      const r = await callGenerate(s, ALICE, LITE, text);
      expect(r.status).toBe(200);
    }
    const stream = await fetch(`${s.url}/v1beta/models/${LITE}:streamGenerateContent?alt=sse`, {
      method: 'POST',
      headers: { 'x-goog-api-key': ALICE, 'content-type': 'application/json' },
      body: JSON.stringify({ contents: [{ parts: [{ text: 'Stream a story for alice' }] }] }),
    });
    expect(stream.status).toBe(200);
    await stream.text();
    const chat = await fetch(`${s.url}/v1beta/openai/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${BOB}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: FLASH, messages: [{ role: 'user', content: 'Hello from bob' }] }),
    });
    expect(chat.status).toBe(200);
    // Older history (earlier days), written into the gateway's own usage store as a flush would.
    const now = Date.now();
    const past = (daysAgo: number, client: string, model: string, prompt: number, output: number) => ({
      hour: Math.floor((now - daysAgo * 86_400_000) / 3_600_000),
      day: usage.dayOf(now - daysAgo * 86_400_000),
      client,
      model,
      counts: { ...zeroCounts(), requests: 3, prompt_tokens: prompt, output_tokens: output },
    });
    await usage.store.write(
      {
        seq: 1_000_000,
        entries: [
          past(3, 'alice', LITE, 120_000, 30_000),
          past(6, 'bob', FLASH, 60_000, 25_000),
          past(10, 'carol', 'gemini-2.5-pro', 200_000, 80_000),
          past(10, 'alice', FLASH, 40_000, 10_000),
          past(20, 'carol', LITE, 90_000, 9_000),
          past(27, 'bob', LITE, 30_000, 3_000),
        ],
      },
      usage.dayOf(now),
    );
    // What the API says (the page must draw exactly that).
    const today = usage.dayOf(Date.now());
    const from = new Date(Date.parse(`${today}T00:00:00Z`) - 29 * 86_400_000).toISOString().slice(0, 10);
    let daily: Json[] = [];
    await expect
      .poll(async () => {
        const res = await admin(s, 'GET', `/admin/usage?from=${from}&to=${today}`);
        daily = ((await res.json()) as Json).rows;
        return daily
          .filter((r: Json) => r.day === today && (r.client === 'alice' || r.client === 'bob'))
          .reduce((n: number, r: Json) => n + r.requests, 0);
      })
      .toBe(4);
    const tokens = (r: Json) => r.prompt_tokens + r.output_tokens + r.thought_tokens;
    const sumBy = (rows: Json[], pick: (r: Json) => boolean, value: (r: Json) => number) =>
      rows.filter(pick).reduce((n, r) => n + value(r), 0);
    const aliceToday = sumBy(daily, (r) => r.client === 'alice' && r.day === today, tokens);
    expect(aliceToday).toBeGreaterThan(0);

    await mkdir(SCREENSHOTS, { recursive: true });
    const page = await openPage(1280);
    await signIn(page, ADMIN);
    const chart = page.locator('#usage-chart');
    const bar = (slot: string, series: string) =>
      chart.locator(`rect[data-slot="${slot}"][data-series="${series}"]`).getAttribute('data-value');
    await expect.poll(() => chart.locator('rect').count()).toBeGreaterThan(0);

    // 30 days per client, tokens (the default view): today's bar and a seeded day's, to the token.
    expect(await chart.getAttribute('data-period')).toBe('day');
    expect(Number(await bar(today, 'alice'))).toBe(aliceToday);
    const carolDay = usage.dayOf(now - 10 * 86_400_000);
    expect(Number(await bar(carolDay, 'carol'))).toBe(280_000);
    expect(await page.locator('#usage-legend li').allTextContents()).toEqual(
      expect.arrayContaining(['alice', 'bob', 'carol']),
    );
    expect(await page.locator('#usage-body tr[data-series="carol"] [data-col=requests]').textContent()).toBe(
      '6',
    );
    await expectFits(page);
    await page.screenshot({ path: join(SCREENSHOTS, 'usage-30-days-per-client.png'), fullPage: true });

    // Per model.
    await page.getByRole('button', { name: 'Per model' }).click();
    expect(await chart.getAttribute('data-group')).toBe('model');
    expect(Number(await bar(carolDay, 'gemini-2.5-pro'))).toBe(280_000);
    expect(Number(await bar(today, LITE))).toBe(
      sumBy(daily, (r) => r.model === LITE && r.day === today, tokens),
    );

    // Cost, per model: the bars are the API's cost_usd.
    await page.getByRole('button', { name: 'Cost' }).click();
    expect(await chart.getAttribute('data-metric')).toBe('cost');
    const proCost = sumBy(
      daily,
      (r) => r.model === 'gemini-2.5-pro',
      (r) => r.cost_usd,
    );
    expect(proCost).toBeCloseTo((200_000 * 1.25 + 80_000 * 10) / 1e6, 9);
    expect(Number(await bar(carolDay, 'gemini-2.5-pro'))).toBeCloseTo(proCost, 9);
    await page.screenshot({ path: join(SCREENSHOTS, 'usage-30-days-cost-per-model.png'), fullPage: true });

    // The last 24 hours, per hour: only today's traffic (the seeded days are older).
    await page.getByRole('button', { name: 'Last 24 hours' }).click();
    await page.getByRole('button', { name: 'Tokens' }).click();
    await page.getByRole('button', { name: 'Per client' }).click();
    expect(await chart.getAttribute('data-period')).toBe('hour');
    const hourly = ((await (await admin(s, 'GET', '/admin/usage/hourly?hours=24')).json()) as Json).rows;
    const thisHour = new Date(Math.floor(Date.now() / 3_600_000) * 3_600_000).toISOString();
    expect(Number(await bar(thisHour, 'alice'))).toBe(
      sumBy(hourly, (r) => r.client === 'alice' && r.hour === thisHour, tokens),
    );
    expect(await chart.locator('rect[data-series="carol"]').count()).toBe(0);
    expect(await chart.locator('rect').count()).toBeGreaterThan(0);
    await expectFits(page);
    await page.screenshot({ path: join(SCREENSHOTS, 'usage-24-hours-per-client.png'), fullPage: true });

    // Cost per client over 30 days, the largest first, as the API sums it.
    const costOf = (c: string) =>
      sumBy(
        daily,
        (r) => r.client === c,
        (r) => r.cost_usd ?? 0,
      );
    const order = ['alice', 'bob', 'carol', 'tests']
      .filter((c) => costOf(c) > 0)
      .sort((a, b) => costOf(b) - costOf(a));
    expect(
      await page
        .locator('#cost-list .cost-row')
        .evaluateAll((rows) => rows.map((r) => r.getAttribute('data-client'))),
    ).toEqual(order);
    expect(await page.locator('#cost-list [data-client="carol"] [data-col=cost]').textContent()).toBe(
      usdText(costOf('carol')),
    );

    // Clients: the env clients are listed, not changeable here.
    const clientRow = (name: string) => page.locator(`#clients-body tr[data-client="${name}"]`);
    await expect.poll(() => clientRow('alice').count()).toBe(1);
    expect(await clientRow('alice').locator('[data-col=source]').textContent()).toBe('env');
    expect(await clientRow('alice').getByRole('button', { name: 'Disable client alice' }).isDisabled()).toBe(
      true,
    );
    expect(await clientRow('alice').locator('[data-col=tokens]').textContent()).toBe(
      aliceToday.toLocaleString('en-US'),
    );

    // Create a client: its token is shown once and works.
    const form = page.locator('#client-form');
    await form.getByLabel('Name').fill('dash-client');
    await form.getByLabel('Requests / min').fill('50');
    await form.getByLabel('Models (comma-separated; empty: all)').fill(LITE);
    await page.getByRole('button', { name: 'Create client' }).click();
    const shown = page.locator('#token-once-value');
    await expect.poll(() => shown.textContent()).not.toBe('');
    const first = (await shown.textContent())!;
    expect((await callGenerate(s, first, LITE, 'hello from the new client')).status).toBe(200);
    await expect.poll(() => clientRow('dash-client').count()).toBe(1);
    expect(await clientRow('dash-client').locator('[data-col=limits]').textContent()).toBe('50 · — · —');
    expect(await clientRow('dash-client').locator('[data-col=models]').textContent()).toBe(LITE);
    await expectFits(page);
    await page.screenshot({ path: join(SCREENSHOTS, 'clients-token-shown-once.png'), fullPage: true });
    // Hidden, it is gone from the page; it was never stored.
    await page.getByRole('button', { name: 'Hide' }).click();
    expect(await page.content()).not.toContain(first);
    expect(await page.evaluate(() => JSON.stringify(sessionStorage))).not.toContain(first);

    // Rotate (two clicks): a new token, the old one refused.
    const rotate = clientRow('dash-client').getByRole('button', {
      name: 'Rotate the token of client dash-client',
    });
    await rotate.click();
    expect(await rotate.textContent()).toBe('Confirm rotation');
    await rotate.click();
    await expect.poll(() => shown.textContent()).not.toBe('');
    const second = (await shown.textContent())!;
    expect(second).not.toBe(first);
    expect((await callGenerate(s, first, LITE, 'old token')).status).toBe(401);
    expect((await callGenerate(s, second, LITE, 'new token')).status).toBe(200);

    // Disable: refused; enable: served again.
    await clientRow('dash-client').getByRole('button', { name: 'Disable client dash-client' }).click();
    await expect.poll(() => clientRow('dash-client').locator('.badge').textContent()).toBe('disabled');
    expect((await callGenerate(s, second, LITE, 'while disabled')).status).toBeGreaterThanOrEqual(401);
    expect((await callGenerate(s, second, LITE, 'while disabled')).status).toBeLessThan(404);
    await clientRow('dash-client').getByRole('button', { name: 'Enable client dash-client' }).click();
    await expect.poll(() => clientRow('dash-client').locator('.badge').textContent()).toBe('active');
    expect((await callGenerate(s, second, LITE, 'enabled again')).status).toBe(200);
    await page.getByRole('button', { name: 'Hide' }).click();

    await expectFits(page);
    await page.screenshot({ path: join(SCREENSHOTS, 'dashboard-1280.png'), fullPage: true });
    for (const f of ['usage-30-days-per-client.png', 'usage-24-hours-per-client.png', 'dashboard-1280.png'])
      expect(readFileSync(join(SCREENSHOTS, f)).subarray(0, 4)).toEqual(
        Buffer.from([0x89, 0x50, 0x4e, 0x47]),
      );
    await page.context().close();
    expect(pageErrors).toEqual([]);
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
