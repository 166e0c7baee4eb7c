/**
 * The admin dashboard (GET /admin/dashboard): one self-contained HTML page, inline CSS and JS, no
 * framework and no build step. It carries no data and no secret: it asks for ADMIN_TOKEN, keeps
 * it in sessionStorage (this tab only) and calls /health/detailed and the /admin API with it as
 * `Authorization: Bearer`. Works under the gateway's CSP (inline <script>/<style> allowed,
 * inline event handler attributes not, connections to 'self' only). Every value from the API is
 * written with textContent or as an attribute value, never parsed as HTML.
 *
 * Kept as a string (String.raw, so the backslashes of the script's regular expressions survive)
 * so that `tsc` ships it in dist/ with no copy step. The script below must not contain backticks
 * or dollar-brace.
 */
export const DASHBOARD_HTML = String.raw`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<meta name="robots" content="noindex, nofollow">
<link rel="icon" href="data:,">
<title>Gemini gateway · admin dashboard</title>
<style>
  :root {
    color-scheme: light dark;
    --bg: #f6f7f9; --fg: #1d2330; --muted: #5b6478; --card: #fff; --line: #d9dde5;
    --ok: #176b36; --ok-bg: #dcf3e3; --warn: #7a4d00; --warn-bg: #fdefcf;
    --bad: #9b1c1c; --bad-bg: #fde2e2; --off: #3f4654; --off-bg: #e4e7ec; --accent: #1a56db;
  }
  @media (prefers-color-scheme: dark) {
    :root {
      --bg: #12151b; --fg: #e6e9ef; --muted: #9aa3b5; --card: #1b2029; --line: #2e3542;
      --ok: #7ee2a0; --ok-bg: #163b24; --warn: #f5c96b; --warn-bg: #3d2e0c;
      --bad: #ff9d9d; --bad-bg: #471b1b; --off: #c3c9d5; --off-bg: #2b313c; --accent: #7aa7ff;
    }
  }
  * { box-sizing: border-box; }
  body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
    background: var(--bg); color: var(--fg); }
  header { display: flex; flex-wrap: wrap; gap: .75rem; align-items: center; justify-content: space-between;
    padding: .75rem 1.25rem; background: var(--card); border-bottom: 1px solid var(--line); }
  h1 { font-size: 1.15rem; margin: 0; }
  h2 { font-size: 1rem; margin: 0 0 .6rem; }
  main { padding: 1rem 1.25rem; max-width: 1500px; margin: 0 auto; }
  section.card { background: var(--card); border: 1px solid var(--line); border-radius: 8px;
    padding: 1rem; margin-bottom: 1rem; }
  .toolbar { display: flex; flex-wrap: wrap; gap: .5rem; align-items: center; }
  .muted { color: var(--muted); }
  button { font: inherit; padding: .3rem .7rem; border-radius: 6px; border: 1px solid var(--line);
    background: var(--card); color: var(--fg); cursor: pointer; }
  button:hover:not(:disabled) { border-color: var(--accent); }
  button:focus-visible, input:focus-visible { outline: 2px solid var(--accent); outline-offset: 1px; }
  button:disabled { opacity: .45; cursor: default; }
  button.primary { background: var(--accent); border-color: var(--accent); color: #fff; }
  input[type=password] { font: inherit; padding: .35rem .5rem; border: 1px solid var(--line);
    border-radius: 6px; min-width: 22rem; max-width: 100%; background: var(--card); color: var(--fg); }
  .banner { padding: .6rem .9rem; border-radius: 6px; margin-bottom: 1rem; }
  .banner.error { background: var(--bad-bg); color: var(--bad); border: 1px solid var(--bad); }
  .banner.info { background: var(--ok-bg); color: var(--ok); border: 1px solid var(--ok); }
  [hidden] { display: none !important; }
  dl.summary { display: grid; grid-template-columns: repeat(auto-fill, minmax(11rem, 1fr)); gap: .5rem; margin: 0; }
  dl.summary div { border: 1px solid var(--line); border-radius: 6px; padding: .45rem .6rem; }
  dl.summary dt { color: var(--muted); font-size: .8rem; }
  dl.summary dd { margin: 0; font-weight: 600; }
  .table-wrap { overflow-x: auto; }
  table { border-collapse: collapse; width: 100%; }
  caption { text-align: left; padding-bottom: .4rem; color: var(--muted); }
  th, td { text-align: left; padding: .4rem .5rem; border-bottom: 1px solid var(--line); vertical-align: top; }
  th { font-size: .8rem; color: var(--muted); font-weight: 600; white-space: nowrap; }
  td.num { font-variant-numeric: tabular-nums; white-space: nowrap; }
  td.err { max-width: 22rem; overflow-wrap: anywhere; }
  td.actions { white-space: nowrap; }
  td.actions button + button { margin-left: .3rem; }
  td code { white-space: nowrap; }
  code { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: .85rem; }
  .badge { display: inline-block; padding: .05rem .5rem; border-radius: 999px; font-size: .8rem;
    font-weight: 600; white-space: nowrap; }
  .badge[data-state=available], .badge[data-state=ready] { background: var(--ok-bg); color: var(--ok); }
  .badge[data-state=resting] { background: var(--warn-bg); color: var(--warn); }
  .badge[data-state=circuit_open], .badge[data-state=not_ready] { background: var(--bad-bg); color: var(--bad); }
  .badge[data-state=disabled], .badge[data-state=unknown] { background: var(--off-bg); color: var(--off); }
  #capacity { max-width: 1280px; }
  h3 { font-size: .95rem; margin: 0 0 .4rem; }
  .legend { display: flex; flex-wrap: wrap; gap: .9rem; font-size: .8rem; color: var(--muted); margin: 0 0 .6rem; }
  .legend span::before { content: ""; display: inline-block; width: .8rem; height: .6rem; border-radius: 2px;
    margin-right: .3rem; vertical-align: baseline; }
  .legend .l-used::before, .bar .used { background: var(--accent); }
  .legend .l-rest::before, .bar .rest { background: repeating-linear-gradient(135deg, var(--warn) 0 2px, var(--warn-bg) 2px 5px); }
  .legend .l-free::before, .bar { background: var(--ok-bg); }
  .cap-grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(17rem, 1fr)); gap: .75rem; margin-bottom: 1rem; }
  .cap-model { border: 1px solid var(--line); border-radius: 6px; padding: .6rem .75rem; min-width: 0; }
  .cap-model h3 { overflow-wrap: anywhere; }
  .cap-row { margin: .4rem 0; }
  .cap-label { display: flex; flex-wrap: wrap; justify-content: space-between; column-gap: .5rem; font-size: .8rem; }
  .cap-label .num { font-variant-numeric: tabular-nums; font-weight: 600; }
  .cap-label.muted { font-variant-numeric: tabular-nums; color: var(--muted); margin-top: .1rem; }
  .bar { display: flex; height: .7rem; border-radius: 4px; overflow: hidden; margin-top: .15rem;
    border: 1px solid var(--line); }
  .bar span { display: block; height: 100%; }
  .cap-note { font-size: .8rem; margin: .3rem 0 0; overflow-wrap: anywhere; }
  .cap-note.warn { color: var(--warn); }
  #budgets-body td[data-col=model], #budgets-body td[data-col=until] { white-space: nowrap; }
  /* Usage, cost and clients (src/usage, src/clients). */
  .section-head { display: flex; flex-wrap: wrap; gap: .5rem 1rem; align-items: baseline; justify-content: space-between; }
  .segmented { display: inline-flex; border: 1px solid var(--line); border-radius: 6px; overflow: hidden; }
  .segmented button { border: 0; border-radius: 0; padding: .25rem .65rem; }
  .segmented button + button { border-left: 1px solid var(--line); }
  .segmented button[aria-pressed=true] { background: var(--accent); color: #fff; }
  .chart-wrap { position: relative; margin: .5rem 0; }
  svg.chart { display: block; width: 100%; height: auto; }
  svg.chart .axis { fill: var(--muted); font: 11px system-ui, sans-serif; }
  svg.chart .grid { stroke: var(--line); stroke-width: 1; }
  .series-legend { display: flex; flex-wrap: wrap; gap: .35rem 1rem; font-size: .85rem; margin: .3rem 0 .6rem; padding: 0; list-style: none; }
  .series-legend li { display: inline-flex; align-items: center; gap: .35rem; overflow-wrap: anywhere; }
  .swatch { display: inline-block; width: .8rem; height: .8rem; border-radius: 2px; flex: none; }
  .cost-list { display: grid; gap: .45rem; margin: .3rem 0 .8rem; }
  .cost-row { display: grid; grid-template-columns: minmax(6rem, 14rem) 1fr minmax(6rem, auto); gap: .6rem; align-items: center; }
  .cost-row .name { overflow-wrap: anywhere; }
  .cost-row .amount { font-variant-numeric: tabular-nums; font-weight: 600; text-align: right; }
  .cost-bar { height: .8rem; border-radius: 4px; background: var(--accent); min-width: 1px; }
  .cost-track { background: var(--off-bg); border-radius: 4px; overflow: hidden; }
  form.inline { display: flex; flex-wrap: wrap; gap: .5rem .75rem; align-items: flex-end; margin: .4rem 0 .8rem; }
  form.inline label { display: flex; flex-direction: column; font-size: .8rem; color: var(--muted); gap: .15rem; }
  form.inline input { font: inherit; padding: .3rem .45rem; border: 1px solid var(--line); border-radius: 6px;
    background: var(--card); color: var(--fg); width: 9rem; }
  form.inline input.wide { width: 16rem; }
  .token-once { border: 1px solid var(--warn); background: var(--warn-bg); color: var(--fg); border-radius: 6px;
    padding: .6rem .8rem; margin: 0 0 .8rem; display: flex; flex-wrap: wrap; gap: .5rem .8rem; align-items: center; }
  .token-once code { font-size: .95rem; overflow-wrap: anywhere; white-space: normal; user-select: all; }
  .badge[data-state=active] { background: var(--ok-bg); color: var(--ok); }
  .badge[data-state=expired] { background: var(--warn-bg); color: var(--warn); }
  td.wrap { overflow-wrap: anywhere; max-width: 16rem; }
  /* Tables fit a 1280-px window: headers and action buttons wrap instead of widening the page. */
  th { white-space: normal; }
  td.actions { white-space: normal; min-width: 6rem; }
  td.actions button { padding: .2rem .5rem; font-size: .85rem; margin: .1rem .3rem .1rem 0; }
  td.actions button + button { margin-left: 0; }
  td[data-col=latency] { white-space: normal; }
  #keys-body td[data-col=id] { white-space: nowrap; }
</style>
</head>
<body>
<header>
  <h1>Gemini gateway · admin</h1>
  <div class="toolbar" id="toolbar" hidden>
    <span class="muted" id="updated" aria-live="off"></span>
    <button type="button" id="refresh" aria-label="Refresh now">Refresh</button>
    <button type="button" id="reload" aria-label="Reload configuration (re-read the keys file and the config file)">Reload configuration</button>
    <button type="button" id="signout" aria-label="Sign out (forget the admin token in this tab)">Sign out</button>
  </div>
</header>
<main>
  <noscript><p class="banner error">This dashboard needs JavaScript.</p></noscript>
  <div id="error" class="banner error" role="alert" hidden></div>
  <div id="message" class="banner info" role="status" aria-live="polite" hidden></div>

  <section class="card" id="login" aria-labelledby="login-title" hidden>
    <h2 id="login-title">Sign in</h2>
    <form id="login-form" class="toolbar" autocomplete="off">
      <label for="token">Admin token</label>
      <input type="password" id="token" name="token" autocomplete="off" spellcheck="false" required
        aria-describedby="token-help">
      <button type="submit" class="primary" id="signin">Sign in</button>
    </form>
    <p class="muted" id="token-help">The value of ADMIN_TOKEN. It is kept in this tab's session storage
      only and sent as <code>Authorization: Bearer</code> to the gateway's admin API.</p>
  </section>

  <div id="app" hidden>
    <section class="card" aria-labelledby="summary-title">
      <h2 id="summary-title">Readiness <span class="badge" id="status-badge" data-state="unknown">…</span></h2>
      <dl class="summary" id="summary"></dl>
    </section>
    <section class="card" id="usage" aria-labelledby="usage-title">
      <div class="section-head">
        <h2 id="usage-title">Usage over time</h2>
        <div class="toolbar" role="group" aria-label="Usage chart options">
          <span class="segmented" role="group" aria-label="Period">
            <button type="button" data-period="hour" aria-pressed="false">Last 24 hours</button>
            <button type="button" data-period="day" aria-pressed="true">Last 30 days</button>
          </span>
          <span class="segmented" role="group" aria-label="Group by">
            <button type="button" data-group="client" aria-pressed="true">Per client</button>
            <button type="button" data-group="model" aria-pressed="false">Per model</button>
          </span>
          <span class="segmented" role="group" aria-label="Measure">
            <button type="button" data-metric="tokens" aria-pressed="true">Tokens</button>
            <button type="button" data-metric="requests" aria-pressed="false">Requests</button>
            <button type="button" data-metric="cost" aria-pressed="false">Cost</button>
          </span>
        </div>
      </div>
      <p class="muted" id="usage-caption">Tokens are what Google reported in each answer (prompt, output and thinking);
        days are Pacific days, hours are shown in this browser's time zone.</p>
      <div class="chart-wrap">
        <svg class="chart" id="usage-chart" role="img" aria-labelledby="usage-summary" viewBox="0 0 1000 240"
          preserveAspectRatio="xMidYMid meet"></svg>
      </div>
      <p class="muted" id="usage-summary"></p>
      <ul class="series-legend" id="usage-legend" aria-label="Series"></ul>
      <p class="muted" id="no-usage" hidden>No usage in this period yet.</p>
      <div class="table-wrap">
        <table id="usage-table">
          <caption>Totals of the period per series.</caption>
          <thead>
            <tr>
              <th scope="col">Series</th>
              <th scope="col">Requests</th>
              <th scope="col">Prompt tokens</th>
              <th scope="col">Output tokens</th>
              <th scope="col">Thinking tokens</th>
              <th scope="col">Cached tokens</th>
              <th scope="col">Errors</th>
              <th scope="col">Cost (USD)</th>
            </tr>
          </thead>
          <tbody id="usage-body"></tbody>
        </table>
      </div>
    </section>
    <section class="card" id="cost" aria-labelledby="cost-title">
      <h2 id="cost-title">Cost per client · last 30 days</h2>
      <p class="muted" id="cost-note">From the price table (USD per million tokens, GET /admin/usage/prices).</p>
      <div class="cost-list" id="cost-list"></div>
      <p class="muted" id="no-cost" hidden>No usage in the last 30 days.</p>
    </section>
    <section class="card" id="clients" aria-labelledby="clients-title">
      <h2 id="clients-title">Clients</h2>
      <p class="muted" id="clients-unavailable" hidden>This gateway has no client management API.</p>
      <form id="client-form" class="inline" autocomplete="off">
        <label>Name<input id="client-name" name="name" required maxlength="64" spellcheck="false"></label>
        <label>Requests / min<input id="client-rpm" name="rpm" type="number" min="1" step="1" inputmode="numeric"></label>
        <label>Requests / day<input id="client-rpd" name="rpd" type="number" min="1" step="1" inputmode="numeric"></label>
        <label>Tokens / day<input id="client-tpd" name="tpd" type="number" min="1" step="1" inputmode="numeric"></label>
        <label>Models (comma-separated; empty: all)<input id="client-models" name="models" class="wide" spellcheck="false"></label>
        <button type="submit" class="primary" id="client-create">Create client</button>
      </form>
      <div id="token-once" class="token-once" role="status" aria-live="polite" hidden>
        <span id="token-once-label"></span>
        <code id="token-once-value"></code>
        <button type="button" id="token-once-hide">Hide</button>
      </div>
      <div class="table-wrap">
        <table id="clients-table">
          <caption>Clients of CLIENT_API_KEYS_MAP and CLIENTS_FILE are changed where they are defined; those made here, here.</caption>
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">Source</th>
              <th scope="col">State</th>
              <th scope="col">Limits (req/min · req/day · tokens/day)</th>
              <th scope="col">Models</th>
              <th scope="col">Expires</th>
              <th scope="col">Tokens today</th>
              <th scope="col">Cost, 30 days</th>
              <th scope="col">Actions</th>
            </tr>
          </thead>
          <tbody id="clients-body"></tbody>
        </table>
      </div>
    </section>
    <section class="card" id="capacity" aria-labelledby="capacity-title">
      <h2 id="capacity-title">Capacity per model</h2>
      <p class="muted">Google counts quota per project and model. A model's total is the sum of the limits of the
        projects with a usable key for it (each project once); requests today count the Pacific day.</p>
      <p class="legend" aria-hidden="true"><span class="l-used">used</span><span class="l-rest">left, project resting</span><span class="l-free">left</span></p>
      <div class="cap-grid" id="capacity-models"></div>
      <p class="muted" id="no-capacity" hidden>No model has a budget yet: models appear once named in a key's
        model_limits or used.</p>
      <div class="table-wrap">
        <table id="budgets-table">
          <caption>Budgets per project and model: use this minute / today against the project's limits, and rests.</caption>
          <thead>
            <tr>
              <th scope="col">Project</th>
              <th scope="col">Model</th>
              <th scope="col">State</th>
              <th scope="col">Requests / min</th>
              <th scope="col">Requests today</th>
              <th scope="col">Tokens / min</th>
              <th scope="col">Rest until</th>
              <th scope="col">Reason</th>
            </tr>
          </thead>
          <tbody id="budgets-body"></tbody>
        </table>
      </div>
    </section>
    <section class="card" aria-labelledby="keys-title">
      <h2 id="keys-title">Keys</h2>
      <div class="table-wrap">
        <table id="keys-table">
          <caption>Pool keys (masked). Usage is this minute / today against each key's limits; refreshed every 5 seconds.</caption>
          <thead>
            <tr>
              <th scope="col">Key</th>
              <th scope="col">ID</th>
              <th scope="col">Project</th>
              <th scope="col">State</th>
              <th scope="col">Reason</th>
              <th scope="col">Requests / min</th>
              <th scope="col">Requests today</th>
              <th scope="col">Tokens / min</th>
              <th scope="col">Last error</th>
              <th scope="col">Latency</th>
              <th scope="col">Actions</th>
            </tr>
          </thead>
          <tbody id="keys-body"></tbody>
        </table>
      </div>
      <p class="muted" id="no-keys" hidden>No keys in the pool.</p>
    </section>
  </div>
</main>
<script>
(function () {
  'use strict';
  var TOKEN_KEY = 'gemini-gateway.admin-token';
  var REFRESH_MS = 5000;
  var STATE_LABELS = { available: 'available', resting: 'resting', disabled: 'disabled',
    circuit_open: 'circuit open', unknown: 'unknown' };

  var el = function (id) { return document.getElementById(id); };
  var token = null;
  try { token = sessionStorage.getItem(TOKEN_KEY); } catch (e) { token = null; }
  var timer = null;
  var loading = false;
  var again = false;
  var errorSource = null;
  var rows = new Map();
  var pending = new Set();

  function fmt(n) {
    return typeof n === 'number' && isFinite(n) ? n.toLocaleString('en-US') : '—';
  }
  function text(v) {
    return v === null || v === undefined || v === '' ? '—' : String(v);
  }
  function time(iso) {
    if (!iso) return '';
    var d = new Date(iso);
    return isNaN(d.getTime()) ? String(iso) : d.toLocaleString();
  }
  function make(tag, className, content) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (content !== undefined) node.textContent = content;
    return node;
  }

  function showError(message, source) {
    var box = el('error');
    box.textContent = message;
    box.hidden = false;
    errorSource = source || 'action';
  }
  function clearError(source) {
    if (source && errorSource !== source) return;
    el('error').textContent = '';
    el('error').hidden = true;
    errorSource = null;
  }
  function showMessage(message) {
    var box = el('message');
    box.textContent = message;
    box.hidden = false;
  }
  function clearMessage() {
    el('message').textContent = '';
    el('message').hidden = true;
  }

  function problem(res) {
    var d = res.data;
    if (d && typeof d === 'object') {
      if (typeof d.detail === 'string' && d.detail) return d.detail + ' (HTTP ' + res.status + ')';
      if (typeof d.title === 'string' && d.title) return d.title + ' (HTTP ' + res.status + ')';
      if (d.error && typeof d.error.message === 'string') return d.error.message + ' (HTTP ' + res.status + ')';
    }
    return 'HTTP ' + res.status;
  }

  function api(method, path, body) {
    var headers = { accept: 'application/json' };
    if (token) headers.authorization = 'Bearer ' + token;
    var init = { method: method, headers: headers, cache: 'no-store', credentials: 'omit' };
    if (body !== undefined) {
      headers['content-type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    return fetch(path, init).then(
      function (res) {
        return res.text().then(function (raw) {
          var data = null;
          if (raw) { try { data = JSON.parse(raw); } catch (e) { data = null; } }
          return { status: res.status, ok: res.ok, data: data };
        });
      },
      function (err) {
        throw new Error('Cannot reach the gateway: ' + (err && err.message ? err.message : String(err)));
      }
    );
  }

  function showLogin(message) {
    stop();
    el('app').hidden = true;
    el('toolbar').hidden = true;
    el('login').hidden = false;
    clearMessage();
    if (message) showError(message, 'login'); else clearError();
    el('token').focus();
  }
  function forgetToken() {
    token = null;
    try { sessionStorage.removeItem(TOKEN_KEY); } catch (e) { /* storage unavailable */ }
  }
  function rejected(res) {
    forgetToken();
    showLogin('The admin token was rejected: ' + problem(res) + '. Enter it again.');
  }

  function stop() {
    if (timer !== null) clearTimeout(timer);
    timer = null;
  }
  function schedule() {
    stop();
    if (token) timer = setTimeout(refresh, REFRESH_MS);
  }

  function refresh() {
    if (!token) return Promise.resolve();
    if (loading) { again = true; return Promise.resolve(); }
    loading = true;
    again = false;
    stop();
    var usagePath = usagePaths();
    return Promise.all([api('GET', '/health/detailed'), api('GET', '/admin/keys'),
      api('GET', '/admin/capacity'), api('GET', '/admin/budgets'),
      api('GET', usagePath[0]), api('GET', usagePath[1]), api('GET', '/admin/clients')])
      .then(function (results) {
        var health = results[0];
        var keys = results[1];
        var capacity = results[2];
        var budgets = results[3];
        var daily = results[4];
        var hourly = results[5];
        var clients = results[6];
        if (keys.status === 401) { rejected(keys); return; }
        var problems = [];
        if (keys.ok && keys.data && Array.isArray(keys.data.keys)) {
          el('login').hidden = true;
          el('app').hidden = false;
          el('toolbar').hidden = false;
          renderKeys(keys.data.keys);
        } else {
          problems.push('Keys: ' + problem(keys));
        }
        if (health.data && health.data.keys) renderSummary(health.data);
        else problems.push('Readiness: ' + problem(health));
        if (capacity.ok && capacity.data && Array.isArray(capacity.data.models)) renderCapacity(capacity.data.models);
        else problems.push('Capacity: ' + problem(capacity));
        if (budgets.ok && budgets.data && Array.isArray(budgets.data.budgets)) renderBudgets(budgets.data.budgets);
        else problems.push('Budgets: ' + problem(budgets));
        if (daily.status === 404) {
          // A gateway without usage accounting.
          el('usage').hidden = true;
          el('cost').hidden = true;
        } else if (daily.ok && daily.data && Array.isArray(daily.data.rows)
          && hourly.ok && hourly.data && Array.isArray(hourly.data.rows)) {
          usageState.daily = daily.data.rows;
          usageState.hourly = hourly.data.rows;
          renderUsage();
          renderCost();
        } else {
          problems.push('Usage: ' + problem(daily.ok ? hourly : daily));
        }
        if (clients.status === 404) {
          el('clients-unavailable').hidden = false;
          el('client-form').hidden = true;
          el('clients-table').hidden = true;
        } else if (clients.ok && clients.data && Array.isArray(clients.data.clients)) {
          el('clients-unavailable').hidden = true;
          el('client-form').hidden = false;
          el('clients-table').hidden = false;
          renderClients(clients.data.clients);
        } else {
          problems.push('Clients: ' + problem(clients));
        }
        if (problems.length) {
          if (el('app').hidden) { el('login').hidden = false; }
          showError(problems.join(' · '), 'refresh');
        } else {
          clearError('refresh');
          clearError('login');
        }
        el('updated').textContent = 'Updated ' + new Date().toLocaleTimeString();
      })
      .catch(function (err) {
        showError(err.message, 'refresh');
        if (el('app').hidden) el('login').hidden = false;
      })
      .then(function () {
        loading = false;
        if (!token) return;
        if (again) refresh(); else schedule();
      });
  }

  function item(term, value, state) {
    var wrap = make('div');
    wrap.appendChild(make('dt', '', term));
    var dd = make('dd');
    if (state) {
      var badge = make('span', 'badge', value);
      badge.setAttribute('data-state', state);
      dd.appendChild(badge);
    } else {
      dd.textContent = value;
    }
    wrap.appendChild(dd);
    return wrap;
  }

  function renderSummary(h) {
    var badge = el('status-badge');
    var ready = h.status === 'ready';
    badge.textContent = ready ? 'ready' : 'not ready';
    badge.setAttribute('data-state', ready ? 'ready' : 'not_ready');
    var k = h.keys || {};
    var s = h.store || {};
    var c = h.circuits || {};
    var list = el('summary');
    var items = [
      item('Usable keys', fmt(k.usable) + ' of ' + fmt(k.configured)),
      item('Resting', fmt(k.resting)),
      item('Disabled', fmt(k.disabled)),
      item('Circuit open', fmt(k.circuit_open)),
      item('State store', text(s.kind) + (s.reachable ? ' · reachable' : ' · unreachable')
        + (typeof s.latency_ms === 'number' ? ' · ' + s.latency_ms + ' ms' : '')),
      item('Circuits', fmt(c.closed) + ' closed · ' + fmt(c.open) + ' open · ' + fmt(c.half_open) + ' half-open'),
      item('Queue', fmt(h.queue_length) + ' waiting')
    ];
    list.replaceChildren.apply(list, items);
  }

  function num(v) {
    return typeof v === 'number' && isFinite(v) ? v : 0;
  }
  function pct(part, whole) {
    return whole > 0 ? Math.max(0, Math.min(100, (part / whole) * 100)) : 0;
  }

  /**
   * One window of a model: what is left, a bar (used, left in resting projects, left) and
   * "used of total".
   */
  function capRow(label, windowName, used, left, available, total) {
    var row = make('div', 'cap-row');
    row.setAttribute('data-window', windowName);
    var resting = Math.max(0, left - available);
    var head = make('div', 'cap-label');
    head.appendChild(make('span', 'what', label));
    var leftText = make('span', 'num', fmt(left) + ' left');
    leftText.setAttribute('data-col', 'left');
    head.appendChild(leftText);
    row.appendChild(head);
    var bar = make('div', 'bar');
    bar.setAttribute('role', 'img');
    bar.setAttribute('aria-label', label + ': ' + fmt(used) + ' used, ' + fmt(left) + ' left of ' + fmt(total)
      + (resting > 0 ? ', ' + fmt(resting) + ' of it in resting projects' : ''));
    var u = make('span', 'used');
    u.style.width = pct(used, total) + '%';
    var r = make('span', 'rest');
    r.style.width = pct(resting, total) + '%';
    bar.appendChild(u);
    bar.appendChild(r);
    row.appendChild(bar);
    var foot = make('div', 'cap-label muted', fmt(used) + ' used of ' + fmt(total)
      + (resting > 0 ? ' · ' + fmt(resting) + ' left in resting projects' : ''));
    foot.setAttribute('data-col', 'used');
    row.appendChild(foot);
    return row;
  }

  function renderCapacity(models) {
    var grid = el('capacity-models');
    var cards = models.map(function (m) {
      var card = make('div', 'cap-model');
      card.setAttribute('data-model', String(m.model));
      card.appendChild(make('h3', '', text(m.model)));
      var t = m.total || {};
      var u = m.used || {};
      var l = m.left || {};
      var a = m.available || {};
      card.appendChild(capRow('Requests today', 'requests_day', num(u.requests_today), num(l.requests_today),
        num(a.requests_today), num(t.requests_per_day)));
      card.appendChild(capRow('Requests / min', 'requests_minute', num(u.requests_this_minute),
        num(l.requests_this_minute), num(a.requests_this_minute), num(t.requests_per_minute)));
      card.appendChild(capRow('Tokens / min', 'tokens_minute', num(u.tokens_this_minute),
        num(l.tokens_this_minute), num(a.tokens_this_minute), num(t.tokens_per_minute)));
      var projects = Array.isArray(m.projects) ? m.projects : [];
      var note = projects.length === 0
        ? 'No usable key can serve this model.'
        : projects.length + (projects.length === 1 ? ' project' : ' projects') + ': '
          + projects.map(function (p) { return String(p.project); }).join(', ');
      card.appendChild(make('p', 'cap-note muted', note));
      var resting = Array.isArray(m.resting) ? m.resting : [];
      if (resting.length) {
        var rest = make('p', 'cap-note warn', 'Resting: ' + resting.map(function (r) {
          return String(r.project) + (r.until ? ' (until ' + time(r.until) + ')' : '');
        }).join(', '));
        rest.setAttribute('data-col', 'resting');
        card.appendChild(rest);
      }
      return card;
    });
    grid.replaceChildren.apply(grid, cards);
    el('no-capacity').hidden = models.length > 0;
  }

  function renderBudgets(budgets) {
    var body = el('budgets-body');
    var now = Date.now();
    var trs = budgets.map(function (b) {
      var tr = make('tr');
      tr.setAttribute('data-project', String(b.project));
      tr.setAttribute('data-model', String(b.model));
      var u = b.usage || {};
      var l = b.limits || {};
      var resting = b.resting === true && !!b.rest_until && new Date(b.rest_until).getTime() > now;
      var cells = [
        ['project', text(b.project)],
        ['model', b.model === '' ? '(no model: listing)' : text(b.model)],
        ['state', null],
        ['rpm', usage(u.requests_this_minute, l.requests_per_minute)],
        ['rpd', usage(u.requests_today, l.requests_per_day)],
        ['tpm', usage(u.tokens_this_minute, l.tokens_per_minute)],
        ['until', resting ? time(b.rest_until) : '—'],
        ['reason', resting ? text(b.rest_reason) : '—']
      ];
      cells.forEach(function (c) {
        var td = make('td', c[0] === 'rpm' || c[0] === 'rpd' || c[0] === 'tpm' ? 'num' : (c[0] === 'reason' ? 'err' : ''));
        td.setAttribute('data-col', c[0]);
        if (c[0] === 'state') {
          var badge = make('span', 'badge', resting ? 'resting' : 'available');
          badge.setAttribute('data-state', resting ? 'resting' : 'available');
          td.appendChild(badge);
        } else {
          td.textContent = c[1];
        }
        tr.appendChild(td);
      });
      return tr;
    });
    body.replaceChildren.apply(body, trs);
  }

  function usage(value, limit) {
    return fmt(value) + ' / ' + (typeof limit === 'number' ? fmt(limit) : '—');
  }

  // ---- Usage over time, cost per client (GET /admin/usage, /admin/usage/hourly) ----

  var SVG_NS = 'http://www.w3.org/2000/svg';
  var PALETTE = ['#1a56db', '#e3a008', '#0e9f6e', '#d61f69', '#7e3af2', '#ff5a1f', '#0694a2'];
  var OTHER_COLOR = '#8a94a6';
  var MAX_SERIES = 8;
  var CHART = { w: 1000, h: 240, left: 64, right: 8, top: 10, bottom: 26 };
  var METRIC_LABELS = { tokens: 'Tokens', requests: 'Requests', cost: 'Cost (USD)' };
  var usageState = { period: 'day', group: 'client', metric: 'tokens', daily: null, hourly: null, available: true };
  var clientRows = new Map();
  var clientsPending = new Set();

  function pacificToday() {
    var parts = new Intl.DateTimeFormat('en-US', { timeZone: 'America/Los_Angeles', year: 'numeric',
      month: '2-digit', day: '2-digit' }).formatToParts(new Date());
    var m = {};
    parts.forEach(function (p) { m[p.type] = p.value; });
    return m.year + '-' + m.month + '-' + m.day;
  }
  function addDays(day, n) {
    var d = new Date(day + 'T00:00:00Z');
    d.setUTCDate(d.getUTCDate() + n);
    return d.toISOString().slice(0, 10);
  }
  function usagePaths() {
    var today = pacificToday();
    return ['/admin/usage?from=' + addDays(today, -29) + '&to=' + today, '/admin/usage/hourly?hours=24'];
  }
  function usd(v) {
    if (typeof v !== 'number' || !isFinite(v)) return '—';
    if (v === 0) return '$0';
    if (v >= 1) return '$' + v.toLocaleString('en-US', { minimumFractionDigits: 2, maximumFractionDigits: 2 });
    if (v >= 0.01) return '$' + v.toFixed(4);
    return '$' + v.toFixed(6);
  }
  /** A dollar axis label: cents when the steps are a cent or more, else as many digits as the step needs. */
  function axisUsd(v, step) {
    if (v === 0) return '$0';
    var digits = step >= 0.01 ? 2 : Math.min(10, Math.ceil(-Math.log10(step)) + 2);
    return '$' + v.toFixed(digits).replace(/(\.\d\d\d*?)0+$/, '$1');
  }
  function compact(v) {
    var a = Math.abs(v);
    if (a >= 1e9) return (v / 1e9).toFixed(a >= 1e10 ? 0 : 1) + 'B';
    if (a >= 1e6) return (v / 1e6).toFixed(a >= 1e7 ? 0 : 1) + 'M';
    if (a >= 1e3) return (v / 1e3).toFixed(a >= 1e4 ? 0 : 1) + 'k';
    return String(Math.round(v * 100) / 100);
  }
  function tokensOf(r) {
    return num(r.prompt_tokens) + num(r.output_tokens) + num(r.thought_tokens);
  }
  function metricOf(r, metric) {
    if (metric === 'requests') return num(r.requests);
    if (metric === 'cost') return typeof r.cost_usd === 'number' ? r.cost_usd : 0;
    return tokensOf(r);
  }
  function metricText(v, metric) {
    return metric === 'cost' ? usd(v) : fmt(Math.round(v));
  }
  /** The chart's slots: the last 24 UTC hours (ISO) or the last 30 Pacific days. */
  function slotsOf(period) {
    var out = [];
    if (period === 'hour') {
      var now = Math.floor(Date.now() / 3600000);
      for (var i = 23; i >= 0; i--) out.push(new Date((now - i) * 3600000).toISOString());
    } else {
      var today = pacificToday();
      for (var j = 29; j >= 0; j--) out.push(addDays(today, -j));
    }
    return out;
  }
  function slotLabel(slot, period) {
    if (period === 'hour') {
      var d = new Date(slot);
      return String(d.getHours()).padStart(2, '0') + ':00';
    }
    return slot.slice(5);
  }
  function niceMax(v) {
    if (!(v > 0)) return 1;
    var pow = Math.pow(10, Math.floor(Math.log10(v)));
    var steps = [1, 2, 2.5, 5, 10];
    for (var i = 0; i < steps.length; i++) if (steps[i] * pow >= v) return steps[i] * pow;
    return 10 * pow;
  }
  function svgEl(tag, attrs, content) {
    var node = document.createElementNS(SVG_NS, tag);
    Object.keys(attrs).forEach(function (k) { node.setAttribute(k, String(attrs[k])); });
    if (content !== undefined) node.textContent = content;
    return node;
  }

  /** Series of the current view: values per slot, the largest first, the rest summed as "other". */
  function seriesOf(rows, slots) {
    var st = usageState;
    var key = st.period === 'hour' ? 'hour' : 'day';
    var index = new Map();
    slots.forEach(function (s, i) { index.set(s, i); });
    var by = new Map();
    rows.forEach(function (r) {
      var i = index.get(r[key]);
      if (i === undefined) return;
      var name = String(st.group === 'model' ? r.model : r.client);
      var s = by.get(name);
      if (!s) {
        s = { name: name, values: slots.map(function () { return 0; }), rows: [] };
        by.set(name, s);
      }
      s.values[i] += metricOf(r, st.metric);
      s.rows.push(r);
    });
    var list = Array.from(by.values());
    list.forEach(function (s) { s.total = s.values.reduce(function (a, b) { return a + b; }, 0); });
    list.sort(function (a, b) { return b.total - a.total || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0); });
    if (list.length > MAX_SERIES) {
      var rest = list.slice(MAX_SERIES - 1);
      var other = { name: 'other (' + rest.length + ')', other: true, rows: [],
        values: slots.map(function (_, i) { return rest.reduce(function (a, s) { return a + s.values[i]; }, 0); }) };
      rest.forEach(function (s) { other.rows = other.rows.concat(s.rows); });
      other.total = other.values.reduce(function (a, b) { return a + b; }, 0);
      list = list.slice(0, MAX_SERIES - 1).concat([other]);
    }
    list.forEach(function (s, i) { s.color = s.other ? OTHER_COLOR : PALETTE[i % PALETTE.length]; });
    return list;
  }

  function drawChart(svg, slots, series) {
    var st = usageState;
    var c = CHART;
    var plotW = c.w - c.left - c.right;
    var plotH = c.h - c.top - c.bottom;
    var totals = slots.map(function (_, i) { return series.reduce(function (a, s) { return a + s.values[i]; }, 0); });
    var max = niceMax(Math.max.apply(null, totals.concat([0])));
    var nodes = [];
    for (var t = 0; t <= 4; t++) {
      var y = c.top + plotH - (plotH * t) / 4;
      nodes.push(svgEl('line', { x1: c.left, x2: c.w - c.right, y1: y, y2: y, 'class': 'grid' }));
      var v = (max * t) / 4;
      nodes.push(svgEl('text', { x: c.left - 6, y: y + 4, 'text-anchor': 'end', 'class': 'axis' },
        st.metric === 'cost' ? axisUsd(v, max / 4) : compact(v)));
    }
    var step = plotW / slots.length;
    var bw = Math.max(2, step * 0.72);
    var labelEvery = st.period === 'hour' ? 3 : 5;
    slots.forEach(function (slot, i) {
      var x = c.left + i * step + (step - bw) / 2;
      var y0 = c.top + plotH;
      series.forEach(function (s) {
        var value = s.values[i];
        if (!(value > 0)) return;
        var h = (plotH * value) / max;
        y0 -= h;
        var rect = svgEl('rect', { x: x.toFixed(2), y: y0.toFixed(2), width: bw.toFixed(2),
          height: Math.max(h, 0.75).toFixed(2), fill: s.color, 'data-series': s.name, 'data-slot': slot,
          'data-value': value });
        rect.appendChild(svgEl('title', {}, slotLabel(slot, st.period) + ' · ' + s.name + ': '
          + metricText(value, st.metric)));
        nodes.push(rect);
      });
      if ((slots.length - 1 - i) % labelEvery === 0) {
        nodes.push(svgEl('text', { x: (x + bw / 2).toFixed(2), y: c.h - 8, 'text-anchor': 'middle',
          'class': 'axis' }, slotLabel(slot, st.period)));
      }
    });
    svg.replaceChildren.apply(svg, nodes);
    svg.setAttribute('data-period', st.period);
    svg.setAttribute('data-group', st.group);
    svg.setAttribute('data-metric', st.metric);
    svg.setAttribute('data-max', String(max));
  }

  function renderUsage() {
    var st = usageState;
    var rows = st.period === 'hour' ? st.hourly : st.daily;
    if (!rows) return;
    var slots = slotsOf(st.period);
    var series = seriesOf(rows, slots);
    drawChart(el('usage-chart'), slots, series);
    var what = METRIC_LABELS[st.metric] + (st.period === 'hour' ? ' per hour, last 24 hours, ' : ' per day, last 30 days, ')
      + (st.group === 'model' ? 'per model' : 'per client');
    el('usage-summary').textContent = what + (series.length ? ': ' + series.map(function (s) {
      return s.name + ' ' + metricText(s.total, st.metric);
    }).join('; ') : '.');
    var legend = el('usage-legend');
    legend.replaceChildren.apply(legend, series.map(function (s) {
      var li = make('li');
      li.setAttribute('data-series', s.name);
      var sw = make('span', 'swatch');
      sw.style.background = s.color;
      li.appendChild(sw);
      li.appendChild(make('span', '', s.name));
      return li;
    }));
    el('no-usage').hidden = series.length > 0;
    var body = el('usage-body');
    body.replaceChildren.apply(body, series.map(function (s) {
      var sum = { requests: 0, prompt_tokens: 0, output_tokens: 0, thought_tokens: 0, cached_tokens: 0, errors: 0 };
      var cost = null;
      s.rows.forEach(function (r) {
        Object.keys(sum).forEach(function (k) { sum[k] += num(r[k]); });
        if (typeof r.cost_usd === 'number') cost = (cost || 0) + r.cost_usd;
      });
      var tr = make('tr');
      tr.setAttribute('data-series', s.name);
      var name = make('td', 'wrap');
      var sw = make('span', 'swatch');
      sw.style.background = s.color;
      sw.style.marginRight = '.35rem';
      name.appendChild(sw);
      name.appendChild(document.createTextNode(s.name));
      tr.appendChild(name);
      [['requests', fmt(sum.requests)], ['prompt', fmt(sum.prompt_tokens)], ['output', fmt(sum.output_tokens)],
        ['thought', fmt(sum.thought_tokens)], ['cached', fmt(sum.cached_tokens)], ['errors', fmt(sum.errors)],
        ['cost', cost === null ? '—' : usd(cost)]].forEach(function (c) {
        var td = make('td', 'num', c[1]);
        td.setAttribute('data-col', c[0]);
        tr.appendChild(td);
      });
      return tr;
    }));
    document.querySelectorAll('#usage [data-period]').forEach(function (b) {
      b.setAttribute('aria-pressed', String(b.getAttribute('data-period') === st.period));
    });
    document.querySelectorAll('#usage [data-group]').forEach(function (b) {
      b.setAttribute('aria-pressed', String(b.getAttribute('data-group') === st.group));
    });
    document.querySelectorAll('#usage [data-metric]').forEach(function (b) {
      b.setAttribute('aria-pressed', String(b.getAttribute('data-metric') === st.metric));
    });
  }

  /** Per client over the last 30 days: requests, tokens and cost (null: no price for any of its models). */
  function perClient(rows) {
    var by = new Map();
    (rows || []).forEach(function (r) {
      var c = by.get(r.client);
      if (!c) {
        c = { client: String(r.client), requests: 0, tokens: 0, cost: null, unpriced: 0, today: 0 };
        by.set(r.client, c);
      }
      c.requests += num(r.requests);
      c.tokens += tokensOf(r);
      if (typeof r.cost_usd === 'number') c.cost = (c.cost || 0) + r.cost_usd;
      else c.unpriced += num(r.requests);
      if (r.day === pacificToday()) c.today += tokensOf(r);
    });
    return by;
  }

  function renderCost() {
    var list = Array.from(perClient(usageState.daily).values());
    list.sort(function (a, b) { return (b.cost || 0) - (a.cost || 0) || b.tokens - a.tokens; });
    var max = list.reduce(function (m, c) { return Math.max(m, c.cost || 0); }, 0);
    var box = el('cost-list');
    box.replaceChildren.apply(box, list.map(function (c) {
      var row = make('div', 'cost-row');
      row.setAttribute('data-client', c.client);
      row.appendChild(make('span', 'name', c.client));
      var track = make('div', 'cost-track');
      var bar = make('div', 'cost-bar');
      bar.style.width = (max > 0 ? Math.max(0.5, ((c.cost || 0) / max) * 100) : 0) + '%';
      track.appendChild(bar);
      track.setAttribute('role', 'img');
      track.setAttribute('aria-label', c.client + ': ' + usd(c.cost || 0) + ', ' + fmt(c.tokens) + ' tokens, '
        + fmt(c.requests) + ' requests');
      row.appendChild(track);
      var amount = make('span', 'amount', usd(c.cost || 0));
      amount.setAttribute('data-col', 'cost');
      amount.setAttribute('title', fmt(c.tokens) + ' tokens · ' + fmt(c.requests) + ' requests'
        + (c.unpriced ? ' · ' + fmt(c.unpriced) + ' requests to models without a price' : ''));
      row.appendChild(amount);
      return row;
    }));
    el('no-cost').hidden = list.length > 0;
    var unpriced = list.some(function (c) { return c.unpriced > 0; });
    el('cost-note').textContent = 'From the price table (USD per million tokens, GET /admin/usage/prices).'
      + (unpriced ? ' Requests to models the table has no price for are not included.' : '');
  }

  function setUsageView(change) {
    Object.keys(change).forEach(function (k) { usageState[k] = change[k]; });
    renderUsage();
  }

  // ---- Clients (GET/POST/PATCH /admin/clients, POST /admin/clients/{name}/rotate) ----

  function limitsText(l) {
    l = l || {};
    var part = function (v) { return typeof v === 'number' ? fmt(v) : '—'; };
    return part(l.requests_per_minute) + ' · ' + part(l.requests_per_day) + ' · ' + part(l.tokens_per_day);
  }

  function makeClientRow(name) {
    var tr = make('tr');
    tr.setAttribute('data-client', name);
    var cells = {};
    ['name', 'source', 'state', 'limits', 'models', 'expires', 'tokens', 'cost', 'actions'].forEach(function (col) {
      var td = make('td', col === 'tokens' || col === 'cost' ? 'num' : col === 'actions' ? 'actions'
        : col === 'models' || col === 'name' ? 'wrap' : '');
      td.setAttribute('data-col', col);
      cells[col] = td;
      tr.appendChild(td);
    });
    var badge = make('span', 'badge');
    cells.state.appendChild(badge);
    var toggle = make('button', '', 'Disable');
    toggle.type = 'button';
    var rotate = make('button', '', 'Rotate token');
    rotate.type = 'button';
    rotate.setAttribute('aria-label', 'Rotate the token of client ' + name);
    cells.actions.appendChild(toggle);
    cells.actions.appendChild(rotate);
    var row = { tr: tr, cells: cells, badge: badge, toggle: toggle, rotate: rotate, client: null, confirmUntil: 0 };
    toggle.addEventListener('click', function () {
      if (row.client) clientAction(name, 'PATCH', '/admin/clients/' + encodeURIComponent(name),
        { enabled: !row.client.enabled }, row.client.enabled ? 'disabled' : 'enabled');
    });
    rotate.addEventListener('click', function () {
      // Two steps: the old token stops working at once.
      if (Date.now() > row.confirmUntil) {
        row.confirmUntil = Date.now() + 5000;
        rotate.textContent = 'Confirm rotation';
        setTimeout(function () { if (row.client) fillClientRow(row, row.client); }, 5100);
        return;
      }
      row.confirmUntil = 0;
      clientAction(name, 'POST', '/admin/clients/' + encodeURIComponent(name) + '/rotate', undefined, 'rotated');
    });
    return row;
  }

  function fillClientRow(row, c, usage) {
    row.client = c;
    var cells = row.cells;
    cells.name.textContent = text(c.name);
    cells.source.textContent = text(c.source);
    var state = typeof c.state === 'string' ? c.state : (c.enabled === false ? 'disabled' : 'active');
    row.badge.textContent = state;
    row.badge.setAttribute('data-state', state);
    cells.limits.textContent = limitsText(c.limits);
    cells.models.textContent = Array.isArray(c.models) && c.models.length ? c.models.join(', ') : 'all';
    cells.expires.textContent = c.expires_at ? time(c.expires_at) : '—';
    if (usage !== undefined) {
      cells.tokens.textContent = usage ? fmt(usage.today) : '0';
      cells.cost.textContent = usage && usage.cost !== null ? usd(usage.cost) : usd(0);
    }
    var own = c.source === 'admin';
    var busy = clientsPending.has(c.name);
    row.toggle.textContent = c.enabled === false ? 'Enable' : 'Disable';
    row.toggle.setAttribute('aria-label', (c.enabled === false ? 'Enable' : 'Disable') + ' client ' + c.name);
    row.toggle.disabled = busy || !own;
    row.rotate.disabled = busy || !own;
    if (Date.now() > row.confirmUntil) row.rotate.textContent = 'Rotate token';
    var why = own ? '' : 'Defined in ' + (c.source === 'file' ? 'CLIENTS_FILE' : 'CLIENT_API_KEYS_MAP')
      + ': change it there';
    if (why) { row.toggle.title = why; row.rotate.title = why; }
    else { row.toggle.removeAttribute('title'); row.rotate.removeAttribute('title'); }
  }

  function renderClients(list) {
    var body = el('clients-body');
    var usage = perClient(usageState.daily);
    var seen = new Set();
    list.forEach(function (c, i) {
      var name = String(c.name);
      seen.add(name);
      var row = clientRows.get(name);
      if (!row) { row = makeClientRow(name); clientRows.set(name, row); }
      fillClientRow(row, c, usage.get(name) || null);
      if (body.children[i] !== row.tr) body.insertBefore(row.tr, body.children[i] || null);
    });
    clientRows.forEach(function (row, name) {
      if (!seen.has(name)) { row.tr.remove(); clientRows.delete(name); }
    });
  }

  function showToken(name, value, verb) {
    el('token-once-label').textContent = 'Token of client ' + name + ' (' + verb + '): copy it now, it is not shown again.';
    el('token-once-value').textContent = value;
    el('token-once').hidden = false;
  }
  function hideToken() {
    el('token-once-value').textContent = '';
    el('token-once-label').textContent = '';
    el('token-once').hidden = true;
  }

  function clientAction(name, method, path, body, done) {
    clientsPending.add(name);
    var row = clientRows.get(name);
    if (row && row.client) fillClientRow(row, row.client);
    clearMessage();
    return api(method, path, body)
      .then(function (res) {
        if (res.status === 401) { rejected(res); return; }
        if (!res.ok) { showError('Could not change client ' + name + ': ' + problem(res), 'action'); return; }
        clearError('action');
        if (res.data && typeof res.data.token === 'string') showToken(name, res.data.token, done);
        showMessage('Client ' + name + ' ' + done + '.');
      })
      .catch(function (err) { showError(err.message, 'action'); })
      .then(function () {
        clientsPending.delete(name);
        return refresh();
      });
  }

  function createClient(event) {
    event.preventDefault();
    var name = el('client-name').value.trim();
    if (!name) { showError('Enter a client name.', 'action'); return; }
    var limits = {};
    [['client-rpm', 'requests_per_minute'], ['client-rpd', 'requests_per_day'], ['client-tpd', 'tokens_per_day']]
      .forEach(function (f) {
        var v = el(f[0]).value.trim();
        if (v) limits[f[1]] = Number(v);
      });
    var body = { name: name };
    if (Object.keys(limits).length) body.limits = limits;
    var models = el('client-models').value.split(',').map(function (m) { return m.trim(); })
      .filter(function (m) { return m; });
    if (models.length) body.models = models;
    var button = el('client-create');
    button.disabled = true;
    clearMessage();
    hideToken();
    return api('POST', '/admin/clients', body)
      .then(function (res) {
        if (res.status === 401) { rejected(res); return; }
        if (res.status !== 201 || !res.data || typeof res.data.token !== 'string') {
          showError('Could not create client ' + name + ': ' + problem(res), 'action');
          return;
        }
        clearError('action');
        el('client-form').reset();
        showToken(name, res.data.token, 'created');
        showMessage('Client ' + name + ' created.');
      })
      .catch(function (err) { showError(err.message, 'action'); })
      .then(function () {
        button.disabled = false;
        return refresh();
      });
  }

  function canReset(k) {
    if (k.state === 'resting' || k.state === 'circuit_open') return true;
    if (k.circuit === 'open' || k.circuit === 'half_open') return true;
    return !!(k.rest_until && new Date(k.rest_until).getTime() > Date.now());
  }

  function makeRow(id) {
    var tr = make('tr');
    tr.setAttribute('data-key-id', id);
    var cells = {};
    ['key', 'id', 'project', 'state', 'reason', 'rpm', 'rpd', 'tpm', 'error', 'latency', 'actions']
      .forEach(function (name) {
        var td = make('td');
        if (name === 'rpm' || name === 'rpd' || name === 'tpm' || name === 'latency') td.className = 'num';
        if (name === 'error') td.className = 'err';
        if (name === 'actions') td.className = 'actions';
        td.setAttribute('data-col', name);
        cells[name] = td;
        tr.appendChild(td);
      });
    var code = make('code');
    cells.key.appendChild(code);
    var badge = make('span', 'badge');
    cells.state.appendChild(badge);
    var buttons = {
      disable: make('button', '', 'Disable'),
      enable: make('button', '', 'Enable'),
      reset: make('button', '', 'Reset rest')
    };
    buttons.disable.type = 'button';
    buttons.enable.type = 'button';
    buttons.reset.type = 'button';
    buttons.disable.setAttribute('aria-label', 'Disable key ' + id);
    buttons.enable.setAttribute('aria-label', 'Enable key ' + id);
    buttons.reset.setAttribute('aria-label', 'Reset the rest and circuit of key ' + id);
    buttons.disable.addEventListener('click', function () { act(id, 'disable', {}); });
    buttons.enable.addEventListener('click', function () { act(id, 'enable'); });
    buttons.reset.addEventListener('click', function () { act(id, 'reset'); });
    cells.actions.appendChild(buttons.disable);
    cells.actions.appendChild(buttons.enable);
    cells.actions.appendChild(buttons.reset);
    return { tr: tr, cells: cells, code: code, badge: badge, buttons: buttons, key: null };
  }

  function fillRow(row, k) {
    row.key = k;
    var c = row.cells;
    row.code.textContent = text(k.api_key);
    c.id.textContent = text(k.id);
    c.project.textContent = text(k.project);
    var state = typeof k.state === 'string' ? k.state : 'unknown';
    row.badge.textContent = STATE_LABELS[state] || state;
    row.badge.setAttribute('data-state', state);
    c.reason.textContent = text(k.reason)
      + (state === 'resting' && k.rest_until ? ' (until ' + time(k.rest_until) + ')' : '');
    var u = k.usage || {};
    var l = k.limits || {};
    c.rpm.textContent = usage(u.requests_this_minute, l.requests_per_minute);
    c.rpd.textContent = usage(u.requests_today, l.requests_per_day);
    c.tpm.textContent = usage(u.tokens_this_minute, l.tokens_per_minute);
    c.error.textContent = k.last_error ? String(k.last_error) : '—';
    if (k.last_error_at) c.error.setAttribute('title', 'at ' + time(k.last_error_at));
    else c.error.removeAttribute('title');
    c.latency.textContent = k.latency_ms
      ? fmt(k.latency_ms.last) + ' ms (avg ' + fmt(k.latency_ms.avg) + ' ms)'
      : '—';
    var busy = pending.has(k.id);
    row.buttons.disable.disabled = busy || k.enabled === false;
    row.buttons.enable.disabled = busy || k.enabled !== false;
    row.buttons.reset.disabled = busy || !canReset(k);
  }

  function renderKeys(keys) {
    var body = el('keys-body');
    var seen = new Set();
    keys.forEach(function (k, i) {
      var id = String(k.id);
      seen.add(id);
      var row = rows.get(id);
      if (!row) { row = makeRow(id); rows.set(id, row); }
      fillRow(row, k);
      // Only move a row when the order changed: moving a node would drop the keyboard focus.
      if (body.children[i] !== row.tr) body.insertBefore(row.tr, body.children[i] || null);
    });
    rows.forEach(function (row, id) {
      if (!seen.has(id)) { row.tr.remove(); rows.delete(id); }
    });
    el('no-keys').hidden = keys.length > 0;
  }

  var ACTION_DONE = { disable: 'disabled', enable: 'enabled', reset: 'reset (rest ended, circuit closed)' };

  function act(id, action, body) {
    var row = rows.get(id);
    pending.add(id);
    if (row && row.key) fillRow(row, row.key);
    clearMessage();
    return api('POST', '/admin/keys/' + encodeURIComponent(id) + '/' + action, body)
      .then(function (res) {
        if (res.status === 401) { rejected(res); return; }
        if (!res.ok) { showError('Could not ' + action + ' key ' + id + ': ' + problem(res), 'action'); return; }
        clearError('action');
        showMessage('Key ' + id + ' ' + ACTION_DONE[action] + '.');
      })
      .catch(function (err) { showError(err.message, 'action'); })
      .then(function () {
        pending.delete(id);
        var r = rows.get(id);
        if (r && r.key) fillRow(r, r.key);
        return refresh();
      });
  }

  function reload() {
    var button = el('reload');
    button.disabled = true;
    clearMessage();
    return api('POST', '/admin/reload')
      .then(function (res) {
        if (res.status === 401) { rejected(res); return; }
        if (!res.ok) { showError('Reload failed: ' + problem(res), 'action'); return; }
        clearError('action');
        var n = res.data && typeof res.data.total_keys === 'number' ? res.data.total_keys : null;
        showMessage('Configuration reloaded' + (n === null ? '.' : ': ' + n + ' keys in the pool.'));
      })
      .catch(function (err) { showError(err.message, 'action'); })
      .then(function () {
        button.disabled = false;
        return refresh();
      });
  }

  el('login-form').addEventListener('submit', function (event) {
    event.preventDefault();
    var input = el('token');
    var value = input.value.trim();
    input.value = '';
    if (!value) { showError('Enter the admin token.', 'login'); return; }
    token = value;
    try { sessionStorage.setItem(TOKEN_KEY, value); } catch (e) { /* kept in memory only */ }
    clearError();
    refresh();
  });
  el('refresh').addEventListener('click', function () { refresh(); });
  el('reload').addEventListener('click', function () { reload(); });
  document.querySelectorAll('#usage [data-period]').forEach(function (b) {
    b.addEventListener('click', function () { setUsageView({ period: b.getAttribute('data-period') }); });
  });
  document.querySelectorAll('#usage [data-group]').forEach(function (b) {
    b.addEventListener('click', function () { setUsageView({ group: b.getAttribute('data-group') }); });
  });
  document.querySelectorAll('#usage [data-metric]').forEach(function (b) {
    b.addEventListener('click', function () { setUsageView({ metric: b.getAttribute('data-metric') }); });
  });
  el('client-form').addEventListener('submit', createClient);
  el('token-once-hide').addEventListener('click', hideToken);
  el('signout').addEventListener('click', function () {
    hideToken();
    clientRows.forEach(function (row) { row.tr.remove(); });
    clientRows.clear();
    forgetToken();
    rows.forEach(function (row) { row.tr.remove(); });
    rows.clear();
    showLogin(null);
  });
  document.addEventListener('visibilitychange', function () {
    if (document.visibilityState === 'visible' && token && !loading) refresh();
  });

  if (token) refresh(); else showLogin(null);
})();
</script>
</body>
</html>
`;
