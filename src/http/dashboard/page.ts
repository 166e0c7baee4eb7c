/**
 * The admin dashboard (GET /admin/dashboard): one self-contained HTML page, inline CSS and JS, no
 * framework and no build step. It carries no data and no secret: it asks for ADMIN_TOKEN, keeps
 * it in sessionStorage (this tab only) and calls /health/detailed and the /admin API with it as
 * `Authorization: Bearer`. Works under the gateway's CSP (inline <script>/<style> allowed,
 * inline event handler attributes not, connections to 'self' only). Every value from the API is
 * written with textContent or as an attribute value, never parsed as HTML.
 *
 * Kept as a string (String.raw, so the script's backslashes survive) so that `tsc` ships it in
 * dist/ with no copy step. The script below must not contain backticks or dollar-brace.
 */
// biome-ignore lint/complexity/noUselessStringRaw: keeps backslashes in the script literal if one is ever added
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
    return Promise.all([api('GET', '/health/detailed'), api('GET', '/admin/keys'),
      api('GET', '/admin/capacity'), api('GET', '/admin/budgets')])
      .then(function (results) {
        var health = results[0];
        var keys = results[1];
        var capacity = results[2];
        var budgets = results[3];
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
  el('signout').addEventListener('click', function () {
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
