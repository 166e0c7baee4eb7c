/**
 * The admin dashboard's script (an ES module of index.html; no framework, no build step). The page
 * carries no data and no secret: it asks for ADMIN_TOKEN, keeps it in sessionStorage (this tab
 * only) and calls /health/detailed and the /admin API with it as `Authorization: Bearer`. It runs
 * under the dashboard's CSP (scripts and styles from 'self' only, no inline event handler
 * attributes, connections to 'self' only): listeners are attached here and styles set through
 * element.style. Every value from the API is written with textContent or as an attribute value,
 * never parsed as HTML.
 */
const TOKEN_KEY = 'gemini-gateway.admin-token';
const REFRESH_MS = 5000;
const STATE_LABELS = {
  available: 'available',
  resting: 'resting',
  disabled: 'disabled',
  circuit_open: 'circuit open',
  unknown: 'unknown',
};

const el = (id) => document.getElementById(id);
let token = null;
try {
  token = sessionStorage.getItem(TOKEN_KEY);
} catch {
  token = null;
}
let timer = null;
let loading = false;
let again = false;
let errorSource = null;
const rows = new Map();
const pending = new Set();

function fmt(n) {
  return typeof n === 'number' && Number.isFinite(n) ? n.toLocaleString('en-US') : '—';
}
function text(v) {
  return v === null || v === undefined || v === '' ? '—' : String(v);
}
function time(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? String(iso) : d.toLocaleString();
}
function make(tag, className, content) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (content !== undefined) node.textContent = content;
  return node;
}

function showError(message, source) {
  const box = el('error');
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
  const box = el('message');
  box.textContent = message;
  box.hidden = false;
}
function clearMessage() {
  el('message').textContent = '';
  el('message').hidden = true;
}

function problem(res) {
  const d = res.data;
  if (d && typeof d === 'object') {
    if (typeof d.detail === 'string' && d.detail) return `${d.detail} (HTTP ${res.status})`;
    if (typeof d.title === 'string' && d.title) return `${d.title} (HTTP ${res.status})`;
    if (d.error && typeof d.error.message === 'string') return `${d.error.message} (HTTP ${res.status})`;
  }
  return `HTTP ${res.status}`;
}

function api(method, path, body) {
  const headers = { accept: 'application/json' };
  if (token) headers.authorization = `Bearer ${token}`;
  const init = { method: method, headers: headers, cache: 'no-store', credentials: 'omit' };
  if (body !== undefined) {
    headers['content-type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  return fetch(path, init).then(
    (res) =>
      res.text().then((raw) => {
        let data = null;
        if (raw) {
          try {
            data = JSON.parse(raw);
          } catch {
            data = null;
          }
        }
        return { status: res.status, ok: res.ok, data: data };
      }),
    (err) => {
      throw new Error(`Cannot reach the gateway: ${err?.message ? err.message : String(err)}`);
    },
  );
}

function showLogin(message) {
  stop();
  el('app').hidden = true;
  el('toolbar').hidden = true;
  el('login').hidden = false;
  clearMessage();
  if (message) showError(message, 'login');
  else clearError();
  el('token').focus();
}
function forgetToken() {
  token = null;
  try {
    sessionStorage.removeItem(TOKEN_KEY);
  } catch {
    /* storage unavailable */
  }
}
function rejected(res) {
  forgetToken();
  showLogin(`The admin token was rejected: ${problem(res)}. Enter it again.`);
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
  if (loading) {
    again = true;
    return Promise.resolve();
  }
  loading = true;
  again = false;
  stop();
  const usagePath = usagePaths();
  return Promise.all([
    api('GET', '/health/detailed'),
    api('GET', '/admin/keys'),
    api('GET', '/admin/capacity'),
    api('GET', '/admin/budgets'),
    api('GET', usagePath[0]),
    api('GET', usagePath[1]),
    api('GET', '/admin/clients'),
  ])
    .then((results) => {
      const health = results[0];
      const keys = results[1];
      const capacity = results[2];
      const budgets = results[3];
      const daily = results[4];
      const hourly = results[5];
      const clients = results[6];
      if (keys.status === 401) {
        rejected(keys);
        return;
      }
      const problems = [];
      if (keys.ok && keys.data && Array.isArray(keys.data.keys)) {
        el('login').hidden = true;
        el('app').hidden = false;
        el('toolbar').hidden = false;
        renderKeys(keys.data.keys);
      } else {
        problems.push(`Keys: ${problem(keys)}`);
      }
      if (health.data?.keys) renderSummary(health.data);
      else problems.push(`Readiness: ${problem(health)}`);
      if (capacity.ok && capacity.data && Array.isArray(capacity.data.models))
        renderCapacity(capacity.data.models);
      else problems.push(`Capacity: ${problem(capacity)}`);
      if (budgets.ok && budgets.data && Array.isArray(budgets.data.budgets))
        renderBudgets(budgets.data.budgets);
      else problems.push(`Budgets: ${problem(budgets)}`);
      if (daily.status === 404) {
        // A gateway without usage accounting.
        el('usage').hidden = true;
        el('cost').hidden = true;
      } else if (
        daily.ok &&
        daily.data &&
        Array.isArray(daily.data.rows) &&
        hourly.ok &&
        hourly.data &&
        Array.isArray(hourly.data.rows)
      ) {
        usageState.daily = daily.data.rows;
        usageState.hourly = hourly.data.rows;
        renderUsage();
        renderCost();
      } else {
        problems.push(`Usage: ${problem(daily.ok ? hourly : daily)}`);
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
        problems.push(`Clients: ${problem(clients)}`);
      }
      if (problems.length) {
        if (el('app').hidden) {
          el('login').hidden = false;
        }
        showError(problems.join(' · '), 'refresh');
      } else {
        clearError('refresh');
        clearError('login');
      }
      el('updated').textContent = `Updated ${new Date().toLocaleTimeString()}`;
    })
    .catch((err) => {
      showError(err.message, 'refresh');
      if (el('app').hidden) el('login').hidden = false;
    })
    .then(() => {
      loading = false;
      if (!token) return;
      if (again) refresh();
      else schedule();
    });
}

function item(term, value, state) {
  const wrap = make('div');
  wrap.appendChild(make('dt', '', term));
  const dd = make('dd');
  if (state) {
    const badge = make('span', 'badge', value);
    badge.setAttribute('data-state', state);
    dd.appendChild(badge);
  } else {
    dd.textContent = value;
  }
  wrap.appendChild(dd);
  return wrap;
}

function renderSummary(h) {
  const badge = el('status-badge');
  const ready = h.status === 'ready';
  badge.textContent = ready ? 'ready' : 'not ready';
  badge.setAttribute('data-state', ready ? 'ready' : 'not_ready');
  const k = h.keys || {};
  const s = h.store || {};
  const c = h.circuits || {};
  const list = el('summary');
  const items = [
    item('Usable keys', `${fmt(k.usable)} of ${fmt(k.configured)}`),
    item('Resting', fmt(k.resting)),
    item('Disabled', fmt(k.disabled)),
    item('Circuit open', fmt(k.circuit_open)),
    item(
      'State store',
      text(s.kind) +
        (s.reachable ? ' · reachable' : ' · unreachable') +
        (typeof s.latency_ms === 'number' ? ` · ${s.latency_ms} ms` : ''),
    ),
    item('Circuits', `${fmt(c.closed)} closed · ${fmt(c.open)} open · ${fmt(c.half_open)} half-open`),
    item('Queue', `${fmt(h.queue_length)} waiting`),
  ];
  list.replaceChildren.apply(list, items);
}

function num(v) {
  return typeof v === 'number' && Number.isFinite(v) ? v : 0;
}
function pct(part, whole) {
  return whole > 0 ? Math.max(0, Math.min(100, (part / whole) * 100)) : 0;
}

/**
 * One window of a model: what is left, a bar (used, left in resting projects, left) and
 * "used of total".
 */
function capRow(label, windowName, used, left, available, total) {
  const row = make('div', 'cap-row');
  row.setAttribute('data-window', windowName);
  const resting = Math.max(0, left - available);
  const head = make('div', 'cap-label');
  head.appendChild(make('span', 'what', label));
  const leftText = make('span', 'num', `${fmt(left)} left`);
  leftText.setAttribute('data-col', 'left');
  head.appendChild(leftText);
  row.appendChild(head);
  const bar = make('div', 'bar');
  bar.setAttribute('role', 'img');
  bar.setAttribute(
    'aria-label',
    label +
      ': ' +
      fmt(used) +
      ' used, ' +
      fmt(left) +
      ' left of ' +
      fmt(total) +
      (resting > 0 ? `, ${fmt(resting)} of it in resting projects` : ''),
  );
  const u = make('span', 'used');
  u.style.width = `${pct(used, total)}%`;
  const r = make('span', 'rest');
  r.style.width = `${pct(resting, total)}%`;
  bar.appendChild(u);
  bar.appendChild(r);
  row.appendChild(bar);
  const foot = make(
    'div',
    'cap-label muted',
    `${fmt(used)} used of ${fmt(total)}${resting > 0 ? ` · ${fmt(resting)} left in resting projects` : ''}`,
  );
  foot.setAttribute('data-col', 'used');
  row.appendChild(foot);
  return row;
}

function renderCapacity(models) {
  const grid = el('capacity-models');
  const cards = models.map((m) => {
    const card = make('div', 'cap-model');
    card.setAttribute('data-model', String(m.model));
    card.appendChild(make('h3', '', text(m.model)));
    const t = m.total || {};
    const u = m.used || {};
    const l = m.left || {};
    const a = m.available || {};
    card.appendChild(
      capRow(
        'Requests today',
        'requests_day',
        num(u.requests_today),
        num(l.requests_today),
        num(a.requests_today),
        num(t.requests_per_day),
      ),
    );
    card.appendChild(
      capRow(
        'Requests / min',
        'requests_minute',
        num(u.requests_this_minute),
        num(l.requests_this_minute),
        num(a.requests_this_minute),
        num(t.requests_per_minute),
      ),
    );
    card.appendChild(
      capRow(
        'Tokens / min',
        'tokens_minute',
        num(u.tokens_this_minute),
        num(l.tokens_this_minute),
        num(a.tokens_this_minute),
        num(t.tokens_per_minute),
      ),
    );
    const projects = Array.isArray(m.projects) ? m.projects : [];
    const note =
      projects.length === 0
        ? 'No usable key can serve this model.'
        : projects.length +
          (projects.length === 1 ? ' project' : ' projects') +
          ': ' +
          projects.map((p) => String(p.project)).join(', ');
    card.appendChild(make('p', 'cap-note muted', note));
    const resting = Array.isArray(m.resting) ? m.resting : [];
    if (resting.length) {
      const rest = make(
        'p',
        'cap-note warn',
        'Resting: ' +
          resting.map((r) => String(r.project) + (r.until ? ` (until ${time(r.until)})` : '')).join(', '),
      );
      rest.setAttribute('data-col', 'resting');
      card.appendChild(rest);
    }
    return card;
  });
  grid.replaceChildren.apply(grid, cards);
  el('no-capacity').hidden = models.length > 0;
}

function renderBudgets(budgets) {
  const body = el('budgets-body');
  const now = Date.now();
  const trs = budgets.map((b) => {
    const tr = make('tr');
    tr.setAttribute('data-project', String(b.project));
    tr.setAttribute('data-model', String(b.model));
    const u = b.usage || {};
    const l = b.limits || {};
    const resting = b.resting === true && !!b.rest_until && new Date(b.rest_until).getTime() > now;
    const cells = [
      ['project', text(b.project)],
      ['model', b.model === '' ? '(no model: listing)' : text(b.model)],
      ['state', null],
      ['rpm', usage(u.requests_this_minute, l.requests_per_minute)],
      ['rpd', usage(u.requests_today, l.requests_per_day)],
      ['tpm', usage(u.tokens_this_minute, l.tokens_per_minute)],
      ['until', resting ? time(b.rest_until) : '—'],
      ['reason', resting ? text(b.rest_reason) : '—'],
    ];
    cells.forEach((c) => {
      const td = make(
        'td',
        c[0] === 'rpm' || c[0] === 'rpd' || c[0] === 'tpm' ? 'num' : c[0] === 'reason' ? 'err' : '',
      );
      td.setAttribute('data-col', c[0]);
      if (c[0] === 'state') {
        const badge = make('span', 'badge', resting ? 'resting' : 'available');
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
  return `${fmt(value)} / ${typeof limit === 'number' ? fmt(limit) : '—'}`;
}

// ---- Usage over time, cost per client (GET /admin/usage, /admin/usage/hourly) ----

const SVG_NS = 'http://www.w3.org/2000/svg';
const PALETTE = ['#1a56db', '#e3a008', '#0e9f6e', '#d61f69', '#7e3af2', '#ff5a1f', '#0694a2'];
const OTHER_COLOR = '#8a94a6';
const MAX_SERIES = 8;
const CHART = { w: 1000, h: 240, left: 64, right: 8, top: 10, bottom: 26 };
const METRIC_LABELS = { tokens: 'Tokens', requests: 'Requests', cost: 'Cost (USD)' };
const usageState = {
  period: 'day',
  group: 'client',
  metric: 'tokens',
  daily: null,
  hourly: null,
  available: true,
};
const clientRows = new Map();
const clientsPending = new Set();

function pacificToday() {
  const parts = new Intl.DateTimeFormat('en-US', {
    timeZone: 'America/Los_Angeles',
    year: 'numeric',
    month: '2-digit',
    day: '2-digit',
  }).formatToParts(new Date());
  const m = {};
  parts.forEach((p) => {
    m[p.type] = p.value;
  });
  return `${m.year}-${m.month}-${m.day}`;
}
function addDays(day, n) {
  const d = new Date(`${day}T00:00:00Z`);
  d.setUTCDate(d.getUTCDate() + n);
  return d.toISOString().slice(0, 10);
}
function usagePaths() {
  const today = pacificToday();
  return [`/admin/usage?from=${addDays(today, -29)}&to=${today}`, '/admin/usage/hourly?hours=24'];
}
function usd(v) {
  if (typeof v !== 'number' || !Number.isFinite(v)) return '—';
  if (v === 0) return '$0';
  if (v >= 1) return `$${v.toLocaleString('en-US', { minimumFractionDigits: 2, maximumFractionDigits: 2 })}`;
  if (v >= 0.01) return `$${v.toFixed(4)}`;
  return `$${v.toFixed(6)}`;
}
/** A dollar axis label: cents when the steps are a cent or more, else as many digits as the step needs. */
function axisUsd(v, step) {
  if (v === 0) return '$0';
  const digits = step >= 0.01 ? 2 : Math.min(10, Math.ceil(-Math.log10(step)) + 2);
  return `$${v.toFixed(digits).replace(/(\.\d\d\d*?)0+$/, '$1')}`;
}
function compact(v) {
  const a = Math.abs(v);
  if (a >= 1e9) return `${(v / 1e9).toFixed(a >= 1e10 ? 0 : 1)}B`;
  if (a >= 1e6) return `${(v / 1e6).toFixed(a >= 1e7 ? 0 : 1)}M`;
  if (a >= 1e3) return `${(v / 1e3).toFixed(a >= 1e4 ? 0 : 1)}k`;
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
  const out = [];
  if (period === 'hour') {
    const now = Math.floor(Date.now() / 3600000);
    for (let i = 23; i >= 0; i--) out.push(new Date((now - i) * 3600000).toISOString());
  } else {
    const today = pacificToday();
    for (let j = 29; j >= 0; j--) out.push(addDays(today, -j));
  }
  return out;
}
function slotLabel(slot, period) {
  if (period === 'hour') {
    const d = new Date(slot);
    return `${String(d.getHours()).padStart(2, '0')}:00`;
  }
  return slot.slice(5);
}
function niceMax(v) {
  if (!(v > 0)) return 1;
  const pow = 10 ** Math.floor(Math.log10(v));
  const steps = [1, 2, 2.5, 5, 10];
  for (let i = 0; i < steps.length; i++) if (steps[i] * pow >= v) return steps[i] * pow;
  return 10 * pow;
}
function svgEl(tag, attrs, content) {
  const node = document.createElementNS(SVG_NS, tag);
  Object.keys(attrs).forEach((k) => {
    node.setAttribute(k, String(attrs[k]));
  });
  if (content !== undefined) node.textContent = content;
  return node;
}

/** Series of the current view: values per slot, the largest first, the rest summed as "other". */
function seriesOf(rows, slots) {
  const st = usageState;
  const key = st.period === 'hour' ? 'hour' : 'day';
  const index = new Map();
  slots.forEach((s, i) => {
    index.set(s, i);
  });
  const by = new Map();
  rows.forEach((r) => {
    const i = index.get(r[key]);
    if (i === undefined) return;
    const name = String(st.group === 'model' ? r.model : r.client);
    let s = by.get(name);
    if (!s) {
      s = { name: name, values: slots.map(() => 0), rows: [] };
      by.set(name, s);
    }
    s.values[i] += metricOf(r, st.metric);
    s.rows.push(r);
  });
  let list = Array.from(by.values());
  list.forEach((s) => {
    s.total = s.values.reduce((a, b) => a + b, 0);
  });
  list.sort((a, b) => b.total - a.total || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  if (list.length > MAX_SERIES) {
    const rest = list.slice(MAX_SERIES - 1);
    const other = {
      name: `other (${rest.length})`,
      other: true,
      rows: [],
      values: slots.map((_, i) => rest.reduce((a, s) => a + s.values[i], 0)),
    };
    rest.forEach((s) => {
      other.rows = other.rows.concat(s.rows);
    });
    other.total = other.values.reduce((a, b) => a + b, 0);
    list = list.slice(0, MAX_SERIES - 1).concat([other]);
  }
  list.forEach((s, i) => {
    s.color = s.other ? OTHER_COLOR : PALETTE[i % PALETTE.length];
  });
  return list;
}

function drawChart(svg, slots, series) {
  const st = usageState;
  const c = CHART;
  const plotW = c.w - c.left - c.right;
  const plotH = c.h - c.top - c.bottom;
  const totals = slots.map((_, i) => series.reduce((a, s) => a + s.values[i], 0));
  const max = niceMax(Math.max.apply(null, totals.concat([0])));
  const nodes = [];
  for (let t = 0; t <= 4; t++) {
    const y = c.top + plotH - (plotH * t) / 4;
    nodes.push(svgEl('line', { x1: c.left, x2: c.w - c.right, y1: y, y2: y, class: 'grid' }));
    const v = (max * t) / 4;
    nodes.push(
      svgEl(
        'text',
        { x: c.left - 6, y: y + 4, 'text-anchor': 'end', class: 'axis' },
        st.metric === 'cost' ? axisUsd(v, max / 4) : compact(v),
      ),
    );
  }
  const step = plotW / slots.length;
  const bw = Math.max(2, step * 0.72);
  const labelEvery = st.period === 'hour' ? 3 : 5;
  slots.forEach((slot, i) => {
    const x = c.left + i * step + (step - bw) / 2;
    let y0 = c.top + plotH;
    series.forEach((s) => {
      const value = s.values[i];
      if (!(value > 0)) return;
      const h = (plotH * value) / max;
      y0 -= h;
      const rect = svgEl('rect', {
        x: x.toFixed(2),
        y: y0.toFixed(2),
        width: bw.toFixed(2),
        height: Math.max(h, 0.75).toFixed(2),
        fill: s.color,
        'data-series': s.name,
        'data-slot': slot,
        'data-value': value,
      });
      rect.appendChild(
        svgEl('title', {}, `${slotLabel(slot, st.period)} · ${s.name}: ${metricText(value, st.metric)}`),
      );
      nodes.push(rect);
    });
    if ((slots.length - 1 - i) % labelEvery === 0) {
      nodes.push(
        svgEl(
          'text',
          { x: (x + bw / 2).toFixed(2), y: c.h - 8, 'text-anchor': 'middle', class: 'axis' },
          slotLabel(slot, st.period),
        ),
      );
    }
  });
  svg.replaceChildren.apply(svg, nodes);
  svg.setAttribute('data-period', st.period);
  svg.setAttribute('data-group', st.group);
  svg.setAttribute('data-metric', st.metric);
  svg.setAttribute('data-max', String(max));
}

function renderUsage() {
  const st = usageState;
  const rows = st.period === 'hour' ? st.hourly : st.daily;
  if (!rows) return;
  const slots = slotsOf(st.period);
  const series = seriesOf(rows, slots);
  drawChart(el('usage-chart'), slots, series);
  const what =
    METRIC_LABELS[st.metric] +
    (st.period === 'hour' ? ' per hour, last 24 hours, ' : ' per day, last 30 days, ') +
    (st.group === 'model' ? 'per model' : 'per client');
  el('usage-summary').textContent =
    what +
    (series.length
      ? `: ${series.map((s) => `${s.name} ${metricText(s.total, st.metric)}`).join('; ')}`
      : '.');
  const legend = el('usage-legend');
  legend.replaceChildren.apply(
    legend,
    series.map((s) => {
      const li = make('li');
      li.setAttribute('data-series', s.name);
      const sw = make('span', 'swatch');
      sw.style.background = s.color;
      li.appendChild(sw);
      li.appendChild(make('span', '', s.name));
      return li;
    }),
  );
  el('no-usage').hidden = series.length > 0;
  const body = el('usage-body');
  body.replaceChildren.apply(
    body,
    series.map((s) => {
      const sum = {
        requests: 0,
        prompt_tokens: 0,
        output_tokens: 0,
        thought_tokens: 0,
        cached_tokens: 0,
        errors: 0,
      };
      let cost = null;
      s.rows.forEach((r) => {
        Object.keys(sum).forEach((k) => {
          sum[k] += num(r[k]);
        });
        if (typeof r.cost_usd === 'number') cost = (cost || 0) + r.cost_usd;
      });
      const tr = make('tr');
      tr.setAttribute('data-series', s.name);
      const name = make('td', 'wrap');
      const sw = make('span', 'swatch');
      sw.style.background = s.color;
      sw.style.marginRight = '.35rem';
      name.appendChild(sw);
      name.appendChild(document.createTextNode(s.name));
      tr.appendChild(name);
      [
        ['requests', fmt(sum.requests)],
        ['prompt', fmt(sum.prompt_tokens)],
        ['output', fmt(sum.output_tokens)],
        ['thought', fmt(sum.thought_tokens)],
        ['cached', fmt(sum.cached_tokens)],
        ['errors', fmt(sum.errors)],
        ['cost', cost === null ? '—' : usd(cost)],
      ].forEach((c) => {
        const td = make('td', 'num', c[1]);
        td.setAttribute('data-col', c[0]);
        tr.appendChild(td);
      });
      return tr;
    }),
  );
  document.querySelectorAll('#usage [data-period]').forEach((b) => {
    b.setAttribute('aria-pressed', String(b.getAttribute('data-period') === st.period));
  });
  document.querySelectorAll('#usage [data-group]').forEach((b) => {
    b.setAttribute('aria-pressed', String(b.getAttribute('data-group') === st.group));
  });
  document.querySelectorAll('#usage [data-metric]').forEach((b) => {
    b.setAttribute('aria-pressed', String(b.getAttribute('data-metric') === st.metric));
  });
}

/** Per client over the last 30 days: requests, tokens and cost (null: no price for any of its models). */
function perClient(rows) {
  const by = new Map();
  (rows || []).forEach((r) => {
    let c = by.get(r.client);
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
  const list = Array.from(perClient(usageState.daily).values());
  list.sort((a, b) => (b.cost || 0) - (a.cost || 0) || b.tokens - a.tokens);
  const max = list.reduce((m, c) => Math.max(m, c.cost || 0), 0);
  const box = el('cost-list');
  box.replaceChildren.apply(
    box,
    list.map((c) => {
      const row = make('div', 'cost-row');
      row.setAttribute('data-client', c.client);
      row.appendChild(make('span', 'name', c.client));
      const track = make('div', 'cost-track');
      const bar = make('div', 'cost-bar');
      bar.style.width = `${max > 0 ? Math.max(0.5, ((c.cost || 0) / max) * 100) : 0}%`;
      track.appendChild(bar);
      track.setAttribute('role', 'img');
      track.setAttribute(
        'aria-label',
        c.client +
          ': ' +
          usd(c.cost || 0) +
          ', ' +
          fmt(c.tokens) +
          ' tokens, ' +
          fmt(c.requests) +
          ' requests',
      );
      row.appendChild(track);
      const amount = make('span', 'amount', usd(c.cost || 0));
      amount.setAttribute('data-col', 'cost');
      amount.setAttribute(
        'title',
        fmt(c.tokens) +
          ' tokens · ' +
          fmt(c.requests) +
          ' requests' +
          (c.unpriced ? ` · ${fmt(c.unpriced)} requests to models without a price` : ''),
      );
      row.appendChild(amount);
      return row;
    }),
  );
  el('no-cost').hidden = list.length > 0;
  const unpriced = list.some((c) => c.unpriced > 0);
  el('cost-note').textContent =
    'From the price table (USD per million tokens, GET /admin/usage/prices).' +
    (unpriced ? ' Requests to models the table has no price for are not included.' : '');
}

function setUsageView(change) {
  Object.keys(change).forEach((k) => {
    usageState[k] = change[k];
  });
  renderUsage();
}

// ---- Clients (GET/POST/PATCH /admin/clients, POST /admin/clients/{name}/rotate) ----

function limitsText(l) {
  l = l || {};
  const part = (v) => (typeof v === 'number' ? fmt(v) : '—');
  return `${part(l.requests_per_minute)} · ${part(l.requests_per_day)} · ${part(l.tokens_per_day)}`;
}

function makeClientRow(name) {
  const tr = make('tr');
  tr.setAttribute('data-client', name);
  const cells = {};
  ['name', 'source', 'state', 'limits', 'models', 'expires', 'tokens', 'cost', 'actions'].forEach((col) => {
    const td = make(
      'td',
      col === 'tokens' || col === 'cost'
        ? 'num'
        : col === 'actions'
          ? 'actions'
          : col === 'models' || col === 'name'
            ? 'wrap'
            : '',
    );
    td.setAttribute('data-col', col);
    cells[col] = td;
    tr.appendChild(td);
  });
  const badge = make('span', 'badge');
  cells.state.appendChild(badge);
  const toggle = make('button', '', 'Disable');
  toggle.type = 'button';
  const rotate = make('button', '', 'Rotate token');
  rotate.type = 'button';
  rotate.setAttribute('aria-label', `Rotate the token of client ${name}`);
  cells.actions.appendChild(toggle);
  cells.actions.appendChild(rotate);
  const row = {
    tr: tr,
    cells: cells,
    badge: badge,
    toggle: toggle,
    rotate: rotate,
    client: null,
    confirmUntil: 0,
  };
  toggle.addEventListener('click', () => {
    if (row.client)
      clientAction(
        name,
        'PATCH',
        `/admin/clients/${encodeURIComponent(name)}`,
        { enabled: !row.client.enabled },
        row.client.enabled ? 'disabled' : 'enabled',
      );
  });
  rotate.addEventListener('click', () => {
    // Two steps: the old token stops working at once.
    if (Date.now() > row.confirmUntil) {
      row.confirmUntil = Date.now() + 5000;
      rotate.textContent = 'Confirm rotation';
      setTimeout(() => {
        if (row.client) fillClientRow(row, row.client);
      }, 5100);
      return;
    }
    row.confirmUntil = 0;
    clientAction(name, 'POST', `/admin/clients/${encodeURIComponent(name)}/rotate`, undefined, 'rotated');
  });
  return row;
}

function fillClientRow(row, c, usage) {
  row.client = c;
  const cells = row.cells;
  cells.name.textContent = text(c.name);
  cells.source.textContent = text(c.source);
  const state = typeof c.state === 'string' ? c.state : c.enabled === false ? 'disabled' : 'active';
  row.badge.textContent = state;
  row.badge.setAttribute('data-state', state);
  cells.limits.textContent = limitsText(c.limits);
  cells.models.textContent = Array.isArray(c.models) && c.models.length ? c.models.join(', ') : 'all';
  cells.expires.textContent = c.expires_at ? time(c.expires_at) : '—';
  if (usage !== undefined) {
    cells.tokens.textContent = usage ? fmt(usage.today) : '0';
    cells.cost.textContent = usage && usage.cost !== null ? usd(usage.cost) : usd(0);
  }
  const own = c.source === 'admin';
  const busy = clientsPending.has(c.name);
  row.toggle.textContent = c.enabled === false ? 'Enable' : 'Disable';
  row.toggle.setAttribute('aria-label', `${c.enabled === false ? 'Enable' : 'Disable'} client ${c.name}`);
  row.toggle.disabled = busy || !own;
  row.rotate.disabled = busy || !own;
  if (Date.now() > row.confirmUntil) row.rotate.textContent = 'Rotate token';
  const why = own
    ? ''
    : `Defined in ${c.source === 'file' ? 'CLIENTS_FILE' : 'CLIENT_API_KEYS_MAP'}: change it there`;
  if (why) {
    row.toggle.title = why;
    row.rotate.title = why;
  } else {
    row.toggle.removeAttribute('title');
    row.rotate.removeAttribute('title');
  }
}

function renderClients(list) {
  const body = el('clients-body');
  const usage = perClient(usageState.daily);
  const seen = new Set();
  list.forEach((c, i) => {
    const name = String(c.name);
    seen.add(name);
    let row = clientRows.get(name);
    if (!row) {
      row = makeClientRow(name);
      clientRows.set(name, row);
    }
    fillClientRow(row, c, usage.get(name) || null);
    if (body.children[i] !== row.tr) body.insertBefore(row.tr, body.children[i] || null);
  });
  clientRows.forEach((row, name) => {
    if (!seen.has(name)) {
      row.tr.remove();
      clientRows.delete(name);
    }
  });
}

function showToken(name, value, verb) {
  el('token-once-label').textContent =
    `Token of client ${name} (${verb}): copy it now, it is not shown again.`;
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
  const row = clientRows.get(name);
  if (row?.client) fillClientRow(row, row.client);
  clearMessage();
  return api(method, path, body)
    .then((res) => {
      if (res.status === 401) {
        rejected(res);
        return;
      }
      if (!res.ok) {
        showError(`Could not change client ${name}: ${problem(res)}`, 'action');
        return;
      }
      clearError('action');
      if (res.data && typeof res.data.token === 'string') showToken(name, res.data.token, done);
      showMessage(`Client ${name} ${done}.`);
    })
    .catch((err) => {
      showError(err.message, 'action');
    })
    .then(() => {
      clientsPending.delete(name);
      return refresh();
    });
}

function createClient(event) {
  event.preventDefault();
  const name = el('client-name').value.trim();
  if (!name) {
    showError('Enter a client name.', 'action');
    return;
  }
  const limits = {};
  [
    ['client-rpm', 'requests_per_minute'],
    ['client-rpd', 'requests_per_day'],
    ['client-tpd', 'tokens_per_day'],
  ].forEach((f) => {
    const v = el(f[0]).value.trim();
    if (v) limits[f[1]] = Number(v);
  });
  const body = { name: name };
  if (Object.keys(limits).length) body.limits = limits;
  const models = el('client-models')
    .value.split(',')
    .map((m) => m.trim())
    .filter((m) => m);
  if (models.length) body.models = models;
  const button = el('client-create');
  button.disabled = true;
  clearMessage();
  hideToken();
  return api('POST', '/admin/clients', body)
    .then((res) => {
      if (res.status === 401) {
        rejected(res);
        return;
      }
      if (res.status !== 201 || !res.data || typeof res.data.token !== 'string') {
        showError(`Could not create client ${name}: ${problem(res)}`, 'action');
        return;
      }
      clearError('action');
      el('client-form').reset();
      showToken(name, res.data.token, 'created');
      showMessage(`Client ${name} created.`);
    })
    .catch((err) => {
      showError(err.message, 'action');
    })
    .then(() => {
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
  const tr = make('tr');
  tr.setAttribute('data-key-id', id);
  const cells = {};
  ['key', 'id', 'project', 'state', 'reason', 'rpm', 'rpd', 'tpm', 'error', 'latency', 'actions'].forEach(
    (name) => {
      const td = make('td');
      if (name === 'rpm' || name === 'rpd' || name === 'tpm' || name === 'latency') td.className = 'num';
      if (name === 'error') td.className = 'err';
      if (name === 'actions') td.className = 'actions';
      td.setAttribute('data-col', name);
      cells[name] = td;
      tr.appendChild(td);
    },
  );
  const code = make('code');
  cells.key.appendChild(code);
  const badge = make('span', 'badge');
  cells.state.appendChild(badge);
  const buttons = {
    disable: make('button', '', 'Disable'),
    enable: make('button', '', 'Enable'),
    reset: make('button', '', 'Reset rest'),
  };
  buttons.disable.type = 'button';
  buttons.enable.type = 'button';
  buttons.reset.type = 'button';
  buttons.disable.setAttribute('aria-label', `Disable key ${id}`);
  buttons.enable.setAttribute('aria-label', `Enable key ${id}`);
  buttons.reset.setAttribute('aria-label', `Reset the rest and circuit of key ${id}`);
  buttons.disable.addEventListener('click', () => {
    act(id, 'disable', {});
  });
  buttons.enable.addEventListener('click', () => {
    act(id, 'enable');
  });
  buttons.reset.addEventListener('click', () => {
    act(id, 'reset');
  });
  cells.actions.appendChild(buttons.disable);
  cells.actions.appendChild(buttons.enable);
  cells.actions.appendChild(buttons.reset);
  return { tr: tr, cells: cells, code: code, badge: badge, buttons: buttons, key: null };
}

function fillRow(row, k) {
  row.key = k;
  const c = row.cells;
  row.code.textContent = text(k.api_key);
  c.id.textContent = text(k.id);
  c.project.textContent = text(k.project);
  const state = typeof k.state === 'string' ? k.state : 'unknown';
  row.badge.textContent = STATE_LABELS[state] || state;
  row.badge.setAttribute('data-state', state);
  c.reason.textContent =
    text(k.reason) + (state === 'resting' && k.rest_until ? ` (until ${time(k.rest_until)})` : '');
  // The project's use, all models together: Google's limits are per (project, model), so there is
  // no limit to set it against here; the budgets table has each model's use against its limits.
  const u = k.usage || {};
  c.rpm.textContent = fmt(u.requests_this_minute);
  c.rpd.textContent = fmt(u.requests_today);
  c.tpm.textContent = fmt(u.tokens_this_minute);
  c.error.textContent = k.last_error ? String(k.last_error) : '—';
  if (k.last_error_at) c.error.setAttribute('title', `at ${time(k.last_error_at)}`);
  else c.error.removeAttribute('title');
  c.latency.textContent = k.latency_ms
    ? `${fmt(k.latency_ms.last)} ms (avg ${fmt(k.latency_ms.avg)} ms)`
    : '—';
  const busy = pending.has(k.id);
  row.buttons.disable.disabled = busy || k.enabled === false;
  row.buttons.enable.disabled = busy || k.enabled !== false;
  row.buttons.reset.disabled = busy || !canReset(k);
}

function renderKeys(keys) {
  const body = el('keys-body');
  const seen = new Set();
  keys.forEach((k, i) => {
    const id = String(k.id);
    seen.add(id);
    let row = rows.get(id);
    if (!row) {
      row = makeRow(id);
      rows.set(id, row);
    }
    fillRow(row, k);
    // Only move a row when the order changed: moving a node would drop the keyboard focus.
    if (body.children[i] !== row.tr) body.insertBefore(row.tr, body.children[i] || null);
  });
  rows.forEach((row, id) => {
    if (!seen.has(id)) {
      row.tr.remove();
      rows.delete(id);
    }
  });
  el('no-keys').hidden = keys.length > 0;
}

const ACTION_DONE = { disable: 'disabled', enable: 'enabled', reset: 'reset (rest ended, circuit closed)' };

function act(id, action, body) {
  const row = rows.get(id);
  pending.add(id);
  if (row?.key) fillRow(row, row.key);
  clearMessage();
  return api('POST', `/admin/keys/${encodeURIComponent(id)}/${action}`, body)
    .then((res) => {
      if (res.status === 401) {
        rejected(res);
        return;
      }
      if (!res.ok) {
        showError(`Could not ${action} key ${id}: ${problem(res)}`, 'action');
        return;
      }
      clearError('action');
      showMessage(`Key ${id} ${ACTION_DONE[action]}.`);
    })
    .catch((err) => {
      showError(err.message, 'action');
    })
    .then(() => {
      pending.delete(id);
      const r = rows.get(id);
      if (r?.key) fillRow(r, r.key);
      return refresh();
    });
}

function reload() {
  const button = el('reload');
  button.disabled = true;
  clearMessage();
  return api('POST', '/admin/reload')
    .then((res) => {
      if (res.status === 401) {
        rejected(res);
        return;
      }
      if (!res.ok) {
        showError(`Reload failed: ${problem(res)}`, 'action');
        return;
      }
      clearError('action');
      const n = res.data && typeof res.data.total_keys === 'number' ? res.data.total_keys : null;
      showMessage(`Configuration reloaded${n === null ? '.' : `: ${n} keys in the pool.`}`);
    })
    .catch((err) => {
      showError(err.message, 'action');
    })
    .then(() => {
      button.disabled = false;
      return refresh();
    });
}

el('login-form').addEventListener('submit', (event) => {
  event.preventDefault();
  const input = el('token');
  const value = input.value.trim();
  input.value = '';
  if (!value) {
    showError('Enter the admin token.', 'login');
    return;
  }
  token = value;
  try {
    sessionStorage.setItem(TOKEN_KEY, value);
  } catch {
    /* kept in memory only */
  }
  clearError();
  refresh();
});
el('refresh').addEventListener('click', () => {
  refresh();
});
el('reload').addEventListener('click', () => {
  reload();
});
document.querySelectorAll('#usage [data-period]').forEach((b) => {
  b.addEventListener('click', () => {
    setUsageView({ period: b.getAttribute('data-period') });
  });
});
document.querySelectorAll('#usage [data-group]').forEach((b) => {
  b.addEventListener('click', () => {
    setUsageView({ group: b.getAttribute('data-group') });
  });
});
document.querySelectorAll('#usage [data-metric]').forEach((b) => {
  b.addEventListener('click', () => {
    setUsageView({ metric: b.getAttribute('data-metric') });
  });
});
el('client-form').addEventListener('submit', createClient);
el('token-once-hide').addEventListener('click', hideToken);
el('signout').addEventListener('click', () => {
  hideToken();
  clientRows.forEach((row) => {
    row.tr.remove();
  });
  clientRows.clear();
  forgetToken();
  rows.forEach((row) => {
    row.tr.remove();
  });
  rows.clear();
  showLogin(null);
});
document.addEventListener('visibilitychange', () => {
  if (document.visibilityState === 'visible' && token && !loading) refresh();
});

if (token) refresh();
else showLogin(null);
