// The shardex dashboard: plain JavaScript, no build step, no framework, nothing fetched from
// outside (uPlot is vendored), so it works on an air-gapped host. Every page is drawn from the
// JSON API; markup never carries inline styles or scripts, so a strict Content-Security-Policy
// (default-src 'self') can be served with it.
'use strict';

const KINDS = ['cpu', 'memory', 'net', 'iops'];
// The five states that together make a host's capacity, in the order they are drawn.
const SPLIT = ['allocated', 'lent', 'idle', 'offered', 'free'];
const KIND_COLOR = { cpu: '#2563eb', memory: '#16a34a', net: '#ea580c', iops: '#9333ea' };
const TOKEN_KEY = 'shardex.token';
const HOSTS_EVERY_MS = 5000;
const WORKLOAD_EVERY_MS = 10000;
// Samples of the allocated-shards chart kept in memory: about 3 hours at one per 5 s.
const ALLOC_KEEP = 2000;

const main = document.getElementById('main');
const view = document.getElementById('view');
const errorBox = document.getElementById('error');

// ---------------------------------------------------------------------------------------------
// Small helpers

/** Escapes text for use inside HTML built as a string (names come from tenants). */
function esc(s) {
  return String(s ?? '').replace(/[&<>"']/g, (c) =>
    ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);
}

/** Builds an element: attributes (on* are listeners), then children (strings become text). */
function h(tag, attrs, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v == null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const kid of kids.flat()) {
    if (kid == null || kid === false) continue;
    el.append(kid instanceof Node ? kid : String(kid));
  }
  return el;
}

/** A fragment from an HTML string (used for big tables: one parse beats 1,000s of nodes). */
function html(s) {
  const t = document.createElement('template');
  t.innerHTML = s;
  return t.content;
}

/** Three significant digits, without trailing zeros. */
const sig = (x) => String(+x.toPrecision(3));

function scaled(v, base, units) {
  let i = 0;
  while (Math.abs(v) >= base && i < units.length - 1) { v /= base; i++; }
  return `${i ? sig(v) : Math.round(v)} ${units[i]}`;
}

/** A physical amount of a kind, in the unit the API uses for it. */
function fmtPhys(kind, v) {
  if (v == null || !Number.isFinite(v)) return '–';
  switch (kind) {
    case 'cpu': {
      if (Math.abs(v) < 1000) return v === 0 ? '0' : `${Math.round(v)}m`;
      const c = sig(v / 1000);
      return `${c} core${c === '1' ? '' : 's'}`;
    }
    case 'memory': return scaled(v, 1024, ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB']);
    case 'net': return scaled(v, 1000, ['bit/s', 'kbit/s', 'Mbit/s', 'Gbit/s', 'Tbit/s']);
    default: return scaled(v, 1000, ['IOPS', 'k IOPS', 'M IOPS']);
  }
}

/** Shards per kind, zeros left out. */
function fmtShards(s) {
  const parts = KINDS.filter((k) => s && s[k]).map((k) => `${k} ${s[k]}`);
  return parts.length ? parts.join(' · ') : 'none';
}

function fmtTime(t) {
  const d = typeof t === 'number' ? new Date(t * 1000) : new Date(t);
  if (Number.isNaN(d.getTime())) return String(t ?? '–');
  return d.toLocaleString([], { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit', second: '2-digit' });
}

const fmtWindow = (w) => (w ? `${fmtTime(w.start)} → ${fmtTime(w.end)}` : '–');
const sum = (xs, f) => xs.reduce((a, x) => a + (f(x) || 0), 0);
const badge = (text, cls) => `<span class="badge ${esc(cls || text)}">${esc(text)}</span>`;

/** A v4 UUID. crypto.randomUUID exists only in secure contexts, and the dashboard may well be
 *  served over plain http on a LAN address, so build it from getRandomValues (always there). */
function uuid() {
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const x = [...b].map((v) => v.toString(16).padStart(2, '0')).join('');
  return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20)}`;
}

/** Runs f over items, at most n at a time (a tenant's token is rate limited). */
async function mapLimit(items, n, f) {
  const out = new Array(items.length);
  let next = 0;
  const worker = async () => { while (next < items.length) { const i = next++; out[i] = await f(items[i]); } };
  await Promise.all(Array.from({ length: Math.min(n, items.length) }, worker));
  return out;
}

// ---------------------------------------------------------------------------------------------
// The API

const token = () => sessionStorage.getItem(TOKEN_KEY) || '';

/** An API refusal; `problem` is the problem document when the answer was one. */
class ApiError extends Error {
  constructor(message, status, problem) {
    super(message);
    this.status = status;
    this.problem = problem;
  }
}

/** Calls the API with the saved token; resolves to the JSON answer, or throws an ApiError
 *  whose message reads well on its own (the problem document's title and detail). */
async function api(path, { method = 'GET', body, headers = {} } = {}) {
  const hdrs = { Accept: 'application/json', ...headers };
  if (token()) hdrs.Authorization = `Bearer ${token()}`;
  if (body !== undefined) hdrs['Content-Type'] = 'application/json';
  let res;
  try {
    res = await fetch(path, {
      method, headers: hdrs, cache: 'no-store',
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (e) {
    throw new ApiError(`${method} ${path}: could not reach shardex (${e.message})`, 0, null);
  }
  const text = await res.text();
  let doc = null;
  try { doc = text ? JSON.parse(text) : null; } catch { /* not JSON: reported below */ }
  if (!res.ok) {
    const p = doc && typeof doc === 'object' ? doc : null;
    let msg = `${method} ${path}: ${res.status} `;
    msg += p && (p.title || p.detail)
      ? `${p.title || ''}${p.detail ? `: ${p.detail}` : ''}`
      : (text.trim().slice(0, 300) || res.statusText);
    if (res.status === 401) msg += ' (is the token right? Paste it again and press Save)';
    const retry = res.headers.get('Retry-After');
    if (res.status === 429 && retry) msg += ` (retry in ${retry} s)`;
    throw new ApiError(msg, res.status, p);
  }
  if (doc === null) throw new ApiError(`${method} ${path}: the answer is not JSON`, res.status, null);
  return doc;
}

// ---------------------------------------------------------------------------------------------
// Pages, their lifetime and the test hooks

let current = null; // the page shown: { timers, charts, drawn, busy, live() }

/** Leaves the page shown: its timers stop, its charts go, and whatever its requests still in
 *  flight answer is dropped (they check ctx.live()). */
function leave() {
  if (!current) return;
  current.timers.forEach(clearInterval);
  current.charts.forEach((c) => c.destroy());
  current = null;
}

function newPage() {
  const ctx = { timers: [], charts: [], drawn: false, busy: false };
  ctx.live = () => current === ctx;
  return ctx;
}

function clearError() {
  delete main.dataset.error;
  errorBox.hidden = true;
  errorBox.textContent = '';
}

/** Shows why a page could not load, and tells the test through data-error. */
function fail(ctx, e, notice = false) {
  if (!ctx.live()) return;
  const msg = e instanceof Error ? e.message : String(e);
  main.dataset.error = msg;
  errorBox.textContent = msg;
  errorBox.className = notice ? 'notice' : 'error';
  errorBox.hidden = false;
  if (!(e instanceof ApiError) && e instanceof Error) console.error(e);
}

/** The page's data is in and its charts are drawn. */
function markLoaded(ctx, name) {
  if (!ctx.live()) return;
  main.dataset.loaded = name;
  if (!ctx.drawn) {
    ctx.drawn = true;
    window.shardexDrawnAt = performance.now();
  }
}

/** Loads (or refreshes) a page; a refresh still running when the next is due is not doubled. */
async function run(ctx, name, load) {
  if (ctx.busy || !ctx.live()) return;
  ctx.busy = true;
  try {
    await load();
    if (ctx.live()) { clearError(); markLoaded(ctx, name); }
  } catch (e) {
    fail(ctx, e);
  } finally {
    ctx.busy = false;
  }
}

/** Refreshes every `ms` while the tab is visible (a hidden tab needs no fresh numbers). */
function every(ctx, ms, f) {
  ctx.timers.push(setInterval(() => { if (!document.hidden) f(); }, ms));
}

/** Pages that read a tenant's things say so instead of drawing a row of 401s. */
function needToken(ctx, title) {
  if (token()) return false;
  view.append(h('h1', {}, title));
  fail(ctx, 'This page needs a token: paste a tenant token (sxt_…) or the admin token in the '
    + 'Token box at the top and press Save. Without one, only the Hosts page can be read.', true);
  return true;
}

const ROUTES = [
  [/^\/?$/, 'hosts', pageHosts],
  [/^\/workloads\/?$/, 'workloads', pageWorkloads],
  [/^\/workloads\/(\d+)\/?$/, 'workloads', pageWorkload],
  [/^\/market\/?$/, 'market', pageMarket],
  [/^\/reservations\/?$/, 'reservations', pageReservations],
  [/^\/bill\/?$/, 'bill', pageBill],
];

function route() {
  leave();
  main.dataset.loaded = '';
  clearError();
  view.replaceChildren();
  const ctx = current = newPage();
  const path = location.hash.replace(/^#/, '') || '/';
  let m = null;
  const found = ROUTES.find(([re]) => (m = path.match(re)));
  const nav = found ? found[1] : null;
  for (const a of document.querySelectorAll('#nav a')) {
    if (a.dataset.page === nav) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  if (!found) {
    document.title = 'shardex';
    fail(ctx, `There is no page at #${path}.`);
    return;
  }
  document.title = `shardex · ${nav[0].toUpperCase()}${nav.slice(1)}`;
  found[2](ctx, ...m.slice(1));
}

// ---------------------------------------------------------------------------------------------
// Charts

/** x (time) scale: the span of the data. With an hour of samples that is the hour; with a short
 *  history (a page opened seconds after the daemon started) it is the seconds there are, padded
 *  a little and at least X_MIN_SPAN wide, so the data fills the plot and the ticks are whole
 *  seconds. uPlot gives a single sample (or samples all at one time) a day to its right: that
 *  case is read from the data. Used on zoom too (min and max are then the selection's). */
const X_MIN_SPAN = 10;
function padX(u, min, max) {
  const xs = u.data[0];
  if (xs.length && xs[0] === xs[xs.length - 1]) min = max = xs[0];
  if (min == null || max == null) {
    const now = Date.now() / 1000;
    return [now - 3600, now];
  }
  const span = max - min;
  if (span >= 60) return [min, max];
  const pad = Math.max(1, (X_MIN_SPAN - span) / 2, span * 0.05);
  return [min - pad, max + pad];
}
/** y scale from zero: amounts and prices are never negative, and a zero base reads honestly. */
const fromZero = (u, min, max) => [0, max > 0 ? max * 1.1 : 1];

/** Time labels: 24-hour clock; under second ticks (":05") the hour on the first tick and where
 *  the minute changes, under minute and hour ticks the day on the first and where it changes.
 *  Short, so a first label is neither cut at the plot's left edge nor run into the next one
 *  (uPlot's default puts "12/5/26 5:46am" there); the legend's time has the full date. Columns:
 *  tick increment (s), label, then the label when the year, month, day, hour, minute, second
 *  changed; the last 1 means only that line is replaced. */
const X_STAMPS = [
  [86400 * 365, '{YYYY}', null, null, null, null, null, null, 1],
  [86400 * 28, '{MMM}', '\n{YYYY}', null, null, null, null, null, 1],
  [86400, '{MMM} {D}', '\n{YYYY}', null, null, null, null, null, 1],
  [3600, '{HH}:{mm}', '\n{MMM} {D}', null, '\n{MMM} {D}', null, null, null, 1],
  [60, '{HH}:{mm}', '\n{MMM} {D}', null, '\n{MMM} {D}', null, null, null, 1],
  [1, ':{ss}', '\n{HH}:{mm}', null, '\n{HH}:{mm}', null, '\n{HH}:{mm}', null, 1],
  [0.001, ':{ss}.{fff}', '\n{HH}:{mm}', null, '\n{HH}:{mm}', null, '\n{HH}:{mm}', null, 1],
];
/** Tick steps in seconds: uPlot's own for time, without those under a second (a 10 s span on a
 *  wide chart would get ":15.500" ticks). */
const X_INCRS = (() => {
  const m = 60, hr = 3600, d = 86400, mo = d * 28, y = d * 365;
  return [1, 5, 10, 15, 30, m, m * 5, m * 10, m * 15, m * 30, hr, hr * 2, hr * 3, hr * 4, hr * 6, hr * 8, hr * 12,
    d, d * 2, d * 3, d * 4, d * 5, d * 6, d * 7, d * 8, d * 9, d * 10, d * 15, mo, mo * 2, mo * 3, mo * 4, mo * 6,
    y, y * 2, y * 5, y * 10];
})();
/** The x (time) axis and the x series (its legend value), for every chart. */
const xAxis = () => ({ values: X_STAMPS, incrs: X_INCRS });
const xSeries = () => ({ value: (u, v) => (v == null ? '–' : fmtTime(v)) });

/** Draws a uPlot chart into `el` (class chart). Resolves `drawn` on its first draw; every draw
 *  sets data-points to the length of the x series (the browser test reads it). The chart takes
 *  el's width and follows it (a ResizeObserver, not the window: a grid card narrows when a
 *  second card joins its row, and a scroll bar coming takes width too); `destroy` ends both. */
function chart(ctx, el, opts, data) {
  let resolve;
  const drawn = new Promise((r) => { resolve = r; });
  const hooks = { ...(opts.hooks || {}) };
  hooks.draw = [...(hooks.draw || []), (u) => { el.dataset.points = String(u.data[0].length); resolve(); }];
  const u = new uPlot({ width: el.clientWidth || 600, height: 220, ...opts, hooks }, data, el);
  // Resized on the next frame, not in the observer's callback: the new width can change the
  // legend's wrapping, hence el's height, which would notify again within the same frame.
  let frame = 0;
  const fit = () => {
    const w = el.clientWidth;
    if (w > 0 && w !== u.width) u.setSize({ width: w, height: u.height });
  };
  const ro = new ResizeObserver(() => { cancelAnimationFrame(frame); frame = requestAnimationFrame(fit); });
  ro.observe(el);
  // A chart without room is never drawn; don't let it hold the page's loaded mark forever.
  const timer = setTimeout(() => { el.dataset.points ??= String(data[0].length); resolve(); }, 3000);
  const c = {
    u, el, drawn,
    destroy() { clearTimeout(timer); cancelAnimationFrame(frame); ro.disconnect(); u.destroy(); },
  };
  ctx.charts.push(c);
  return c;
}

/** A y axis labelled by `fmt`, as wide as its longest label (units make labels long), and at
 *  least Y_MIN_SIZE so the x axis' first label (the date) fits beside it. */
const Y_MIN_SIZE = 44;
const yAxis = (fmt, incrs) => ({
  incrs,
  values: (u, splits) => splits.map((v) => fmt(v)),
  size(u, values, i, cycle) {
    const axis = u.axes[i];
    if (cycle > 1) return axis._size;
    const longest = (values || []).reduce((a, v) => (v.length > a.length ? v : a), '');
    u.ctx.font = axis.font[0];
    return Math.max(Y_MIN_SIZE,
      Math.ceil(axis.ticks.size + axis.gap + u.ctx.measureText(longest).width / devicePixelRatio) + 4);
  },
});
// Whole amounts get whole ticks (1, 2, 5, 10, 20, 25, 50, …): not "1 bit/s" thrice for 0.6, 0.8, 1.
const WHOLE = Array.from({ length: 16 }, (_, e) => [1, 2, 2.5, 5].map((m) => m * 10 ** e))
  .flat().filter(Number.isInteger);
// Bytes get ticks at powers of two (0, 1 GiB, 2 GiB), not at 954 MiB.
const POW2 = Array.from({ length: 61 }, (_, i) => 2 ** i);

// ---------------------------------------------------------------------------------------------
// #/ Hosts: capacity split per kind, the market summary, allocated shards over time

// Kept across visits to the page: "the time the page has been open" is the tab's.
const allocHistory = [];

function pageHosts(ctx) {
  const summary = h('p', { class: 'summary' });
  const chartEl = h('div', { class: 'chart', id: 'alloc-chart' });
  const hostsEl = h('div', { class: 'hosts' });
  const legend = h('div', { class: 'legend' }, SPLIT.map((s) =>
    h('span', {}, h('i', { class: `swatch seg-${s}` }), s)));
  view.append(
    h('h1', {}, 'Hosts'), summary,
    h('section', { class: 'card' }, h('h2', {}, 'Allocated shards since this page opened'), chartEl),
    h('div', { class: 'legend-row' }, h('span', { class: 'muted' }, 'Capacity split:'), legend),
    hostsEl,
  );
  let plot = null;
  let shown = '';
  const load = async () => {
    const o = await api('/v1/overview');
    if (!ctx.live()) return;
    const hosts = o.hosts || [];
    // The client's clock, not `at`: these are the moments this tab looked.
    allocHistory.push([Date.now() / 1000, ...KINDS.map((k) => sum(hosts, (x) => x.split?.[k]?.allocated))]);
    if (allocHistory.length > ALLOC_KEEP) allocHistory.splice(0, allocHistory.length - ALLOC_KEEP);
    const sr = o.shard_requests || {};
    summary.replaceChildren(
      `${hosts.length} host${hosts.length === 1 ? '' : 's'} · shard requests: `,
      h('b', {}, sr.open ?? 0), ` open of ${sr.total ?? 0}`,
      Object.keys(sr.by_state || {}).length
        ? ` (${Object.entries(sr.by_state).map(([st, n]) => `${st.replace(/_/g, ' ')} ${n}`).join(', ')})` : '',
      ` · as of ${fmtTime(o.at)} (refreshed every 5 s)`,
    );
    // Redraw the cards only when something changed: hovering a bar keeps its tooltip.
    const json = JSON.stringify(hosts);
    if (json !== shown) {
      shown = json;
      hostsEl.replaceChildren(...(hosts.length ? hosts.map(hostCard) : [h('p', { class: 'muted' }, 'No hosts yet.')]));
    }
    const data = [allocHistory.map((r) => r[0]), ...KINDS.map((k, i) => allocHistory.map((r) => r[i + 1]))];
    if (plot) { plot.u.setData(data); return; }
    plot = chart(ctx, chartEl, {
      height: 180,
      scales: { x: { time: true, range: padX }, y: { range: fromZero } },
      axes: [xAxis(), yAxis((v) => sig(v), WHOLE)],
      series: [xSeries(), ...KINDS.map((k) => ({
        label: k, stroke: KIND_COLOR[k], width: 2, value: (u, v) => (v == null ? '–' : `${v} shards`),
        // Points while there are few samples, so the very first refresh shows something.
        points: { show: (u) => u.data[0].length < 40, size: 6 },
      }))],
    }, data);
    await plot.drawn;
  };
  run(ctx, 'hosts', load);
  every(ctx, HOSTS_EVERY_MS, () => run(ctx, 'hosts', load));
}

function hostCard(host) {
  const rows = KINDS.map((k) => {
    const cap = host.capacity?.[k] ?? 0;
    const s = host.split?.[k] || {};
    const bar = h('div', {
      class: 'capacity-bar', role: 'img',
      'aria-label': `${k}: ${SPLIT.map((x) => `${x} ${s[x] ?? 0}`).join(', ')} of ${cap} shards`,
      title: `${k}, ${cap} shards: ${SPLIT.map((x) => `${x} ${s[x] ?? 0}`).join(', ')}`
        + `; reserved ${s.reserved ?? 0}, unreserved ${s.unreserved ?? 0}`,
    });
    for (const state of SPLIT) {
      const n = s[state] ?? 0;
      if (!n || !cap) continue;
      const pct = (100 * n) / cap;
      const seg = h('span', {
        class: `seg seg-${state}`, title: `${k} ${state}: ${n} of ${cap} shards (${sig(pct)}%)`,
      }, pct >= 7 ? n : '');
      seg.style.width = `${pct}%`; // CSSOM, not a style attribute: allowed under a strict CSP
      bar.append(seg);
    }
    return h('div', { class: 'bar-row' },
      h('span', { class: 'kind' }, k), bar,
      h('span', { class: 'bar-total muted' }, `${cap} · res ${s.reserved ?? 0}`));
  });
  const m = host.market || {};
  const market = html(`<table class="data compact"><thead><tr><th>kind</th>
    <th class="num" title="per shard-hour">price</th><th class="num">offered</th>
    <th class="num">leased</th><th class="num">waiting</th></tr></thead><tbody>${KINDS.map((k) => `<tr>
    <td>${k}</td><td class="num">${m.price ? esc(m.price[k]) : '<span class="muted">unpriced</span>'}</td>
    <td class="num">${m.offered?.[k] ?? 0}</td><td class="num">${m.leased?.[k] ?? 0}</td>
    <td class="num">${m.waiting?.[k] ?? 0}</td></tr>`).join('')}</tbody></table>`);
  return h('section', { class: 'card host' },
    h('h2', {}, host.name, ' ', h('span', { class: 'muted small' },
      `#${host.id} · ${host.workloads ?? 0} workload${host.workloads === 1 ? '' : 's'}`)),
    h('div', { class: 'bars' }, rows),
    h('h3', {}, 'Market ', h('span', { class: 'muted small' }, 'price per shard-hour; shards')),
    market);
}

// ---------------------------------------------------------------------------------------------
// #/workloads: every workload the token may see

function kindCell(k, n) {
  if (!n) return '<td class="muted">–</td>';
  const lim = n.limit_in_force === undefined ? '<span class="muted">not read</span>'
    : n.limit_in_force === null ? 'unlimited' : esc(fmtPhys(k, n.limit_in_force));
  let flags = '';
  if (n.censored) flags += ' <span class="flag" title="the last sample was taken at its limit: demand may be higher">at limit</span>';
  if (n.degraded) flags += ` <span class="flag bad" title="${esc(n.degraded)}">degraded</span>`;
  return `<td class="triple"><b>${esc(fmtPhys(k, n.usage))}</b>${flags}<br><span class="small">${esc(fmtPhys(k, n.entitlement))} / ${lim}</span></td>`;
}

function pageWorkloads(ctx) {
  if (needToken(ctx, 'Workloads')) return;
  const count = h('span', { class: 'muted' });
  const table = h('div', { class: 'table-wrap' });
  const filter = h('input', {
    type: 'search', id: 'workload-filter', placeholder: 'filter by name, tenant or reservation',
    oninput: () => {
      const q = filter.value.trim().toLowerCase();
      let shown = 0;
      for (const tr of table.querySelectorAll('tbody tr')) {
        tr.hidden = q !== '' && !tr.dataset.q.includes(q);
        if (!tr.hidden) shown++;
      }
      count.textContent = q ? `${shown} shown` : '';
    },
  });
  view.append(h('h1', {}, 'Workloads'), h('div', { class: 'toolbar' }, filter, count), table);
  run(ctx, 'workloads', async () => {
    const { workloads = [] } = await api('/v1/workloads');
    if (!ctx.live()) return;
    // One string, one parse: 1,000 rows render in a few milliseconds.
    const rows = workloads.map((w) => `<tr data-q="${esc(`${w.name} tenant ${w.tenant} reservation ${w.reservation}`.toLowerCase())}"${w.resolved === false ? ' class="unresolved"' : ''}>
      <td class="name"><a class="workload-link" href="#/workloads/${encodeURIComponent(w.id)}">${esc(w.name)}</a>${w.resolved === false ? ' <span class="flag bad" title="the sampler does not find it">not found</span>' : ''}</td>
      <td class="num">${esc(w.tenant)}</td><td class="num">${esc(w.reservation)}</td>
      ${KINDS.map((k) => kindCell(k, w.kinds?.[k])).join('')}
      <td class="num${w.oom_kills ? ' bad' : ''}">${esc(w.oom_kills ?? 0)}</td></tr>`).join('');
    table.innerHTML = `<table class="data workloads"><thead><tr><th>name</th><th class="num">tenant</th>
      <th class="num">reservation</th>${KINDS.map((k) => `<th>${k}<br><span class="muted small">usage<br>entitled / in force</span></th>`).join('')}
      <th class="num">OOM kills</th></tr></thead><tbody>${rows}</tbody></table>
      ${workloads.length ? '' : '<p class="muted">No workloads.</p>'}`;
    count.textContent = `${workloads.length} workload${workloads.length === 1 ? '' : 's'}`;
  });
}

// ---------------------------------------------------------------------------------------------
// #/workloads/{id}: the last hour per kind, the state now, the engine's decisions

/** A kind is charted when it was measured or forecast, or is entitled to something: one never
 *  measured and entitled to nothing (net, often) would only be an empty chart. */
const hasData = (kd) => kd && (['usage', 'p50', 'p95'].some((s) => (kd[s] || []).some((v) => v != null))
  || ['entitlement', 'limit'].some((s) => (kd[s] || []).some((v) => v != null && v !== 0)));

/** The chart's data: x, p95, p50, entitlement, limit, censored, [memory: OOM, for the legend
 *  only], usage. Usage comes last so it is drawn last, on top of everything. */
function historyData(hist, k) {
  const kd = hist.kinds[k];
  const n = hist.t.length;
  const col = (s) => (kd[s] && kd[s].length === n ? kd[s] : new Array(n).fill(null));
  const usage = col('usage');
  const censored = (kd.censored || []).map((c, i) => (c ? usage[i] : null));
  while (censored.length < n) censored.push(null);
  const oom = k === 'memory' ? [new Array(n).fill(null)] : [];
  return [hist.t, col('p95'), col('p50'), col('entitlement'), col('limit'), censored, ...oom, usage];
}

function workloadChartOpts(k, unit, oom) {
  const fmt = (v) => fmtPhys(k, v);
  const val = (u, v) => (v == null ? '–' : fmt(v));
  return {
    scales: { x: { time: true, range: padX }, y: { range: fromZero } },
    axes: [xAxis(), yAxis(fmt, k === 'memory' ? POW2 : WHOLE)],
    bands: [{ series: [1, 2], fill: 'rgba(100, 116, 139, 0.22)' }],
    series: [
      xSeries(),
      { label: 'forecast p95', stroke: '#94a3b8', width: 1, value: val },
      { label: 'forecast p50', stroke: '#64748b', width: 1, dash: [4, 4], value: val },
      { label: 'entitlement', stroke: '#16a34a', width: 1.5, value: val },
      { label: 'limit in force', stroke: '#ea580c', width: 1.5, dash: [6, 3], paths: uPlot.paths.stepped({ align: 1 }), value: val },
      // Points only, at the usage where the sample was taken at the limit.
      { label: 'at limit (censored)', stroke: '#b91c1c', fill: '#b91c1c', paths: () => null,
        points: { show: true, size: 7, stroke: '#b91c1c', fill: '#fecaca' }, value: (u, v) => (v == null ? '–' : 'yes') },
      // Drawn by the hook below as vertical lines; the series only puts it in the legend.
      ...(k === 'memory' ? [{ label: 'OOM kill', stroke: '#7c3aed', width: 2, value: () => String(oom.list.length) }] : []),
      { label: `usage (${unit})`, stroke: '#1d4ed8', width: 2, value: val },
    ],
    hooks: {
      draw: [(u) => {
        if (k !== 'memory' || !u.series[6].show || !oom.list.length) return; // hidden in the legend
        const { ctx } = u;
        const { min, max } = u.scales.x;
        ctx.save();
        ctx.strokeStyle = '#7c3aed';
        ctx.lineWidth = 2 * devicePixelRatio;
        ctx.setLineDash([5 * devicePixelRatio, 3 * devicePixelRatio]);
        for (const t of oom.list) {
          if (t < min || t > max) continue;
          const x = Math.round(u.valToPos(t, 'x', true));
          ctx.beginPath();
          ctx.moveTo(x, u.bbox.top);
          ctx.lineTo(x, u.bbox.top + u.bbox.height);
          ctx.stroke();
        }
        ctx.restore();
      }],
    },
  };
}

function pageWorkload(ctx, id) {
  if (needToken(ctx, 'Workload')) return;
  const title = h('h1', {}, `Workload ${id}`);
  const stateEl = h('div');
  const chartsEl = h('div', { class: 'charts' });
  const note = h('p', { class: 'muted' });
  const decisionsEl = h('div', { class: 'table-wrap' });
  view.append(h('p', {}, h('a', { href: '#/workloads' }, '← all workloads')), title, stateEl,
    h('h2', {}, 'The last hour'), note, chartsEl, h('h2', {}, 'Decisions'), decisionsEl);
  let plots = new Map();
  let kindsShown = null;
  const oom = { list: [] }; // read by the memory chart's draw hook, updated on each refresh
  const load = async () => {
    const [w, hist, dec] = await Promise.all([
      api(`/v1/workloads/${id}`),
      api(`/v1/workloads/${id}/history?period=1h`),
      // The decisions are an extra: their refusal is shown in their place, the charts still drawn.
      api(`/v1/workloads/${id}/decisions?limit=50`).catch((e) => e),
    ]);
    if (!ctx.live()) return;
    title.replaceChildren(`Workload ${w.name} `, h('span', { class: 'muted small' }, `#${w.id}`));
    stateEl.replaceChildren(workloadState(w));
    decisionsEl.replaceChildren(dec instanceof Error
      ? h('p', { class: 'error' }, `The decisions could not be read: ${dec.message}`)
      : decisionsTable(dec.decisions || []));
    oom.list = hist.ooms || [];
    hist.t = hist.t || [];
    hist.kinds = hist.kinds || {};
    const kinds = KINDS.filter((k) => hasData(hist.kinds[k]));
    const left = KINDS.filter((k) => !kinds.includes(k));
    note.textContent = !kinds.length ? 'No samples in the last hour yet.'
      : left.length ? `Not charted, nothing measured or entitled in the last hour: ${left.join(', ')}.` : '';
    if (oom.list.length && !kinds.includes('memory')) {
      note.textContent += ` OOM kills at ${oom.list.map((t) => fmtTime(t)).join(', ')}.`;
    }
    const drawn = [];
    if (String(kinds) === kindsShown) {
      // setData rescales x to the new samples (padX), so the charts follow the growing history.
      for (const k of kinds) plots.get(k).u.setData(historyData(hist, k));
    } else {
      // The kinds with data changed (or first load): build the charts anew. Every card is in
      // the grid before the first chart is made, so each chart starts at its card's width.
      for (const p of plots.values()) p.destroy();
      ctx.charts = [];
      plots = new Map();
      const els = kinds.map((k) => h('div', { class: 'chart', 'data-kind': k }));
      chartsEl.replaceChildren(...kinds.map((k, i) => h('section', { class: 'card' }, h('h3', {}, k), els[i])));
      kinds.forEach((k, i) => {
        const p = chart(ctx, els[i], workloadChartOpts(k, hist.units?.[k] || '', oom), historyData(hist, k));
        plots.set(k, p);
        drawn.push(p.drawn);
      });
      kindsShown = String(kinds);
    }
    await Promise.all(drawn);
  };
  run(ctx, 'workload', load);
  every(ctx, WORKLOAD_EVERY_MS, () => run(ctx, 'workload', load));
}

function workloadState(w) {
  const rows = KINDS.map((k) => {
    const n = w.kinds?.[k] || {};
    const lim = n.limit_in_force === undefined ? 'not read yet' : n.limit_in_force === null ? 'unlimited' : fmtPhys(k, n.limit_in_force);
    return `<tr><td>${k}</td><td class="num">${w.allocation?.[k] ?? 0}</td><td class="num">${esc(fmtPhys(k, n.usage))}${n.censored ? ' <span class="flag" title="taken at its limit: demand may be higher">at limit</span>' : ''}</td>
      <td class="num">${esc(fmtPhys(k, n.entitlement))}</td><td class="num">${esc(lim)}</td>
      <td>${n.degraded ? `<span class="bad">${esc(n.degraded)}</span>` : '<span class="muted">ok</span>'}</td></tr>`;
  }).join('');
  return html(`<p>Tenant ${esc(w.tenant)} · reservation ${esc(w.reservation)} ·
    OOM kills: <b class="${w.oom_kills ? 'bad' : ''}">${esc(w.oom_kills ?? 0)}</b> ·
    ${w.resolved === false ? '<span class="bad">the sampler does not find it</span>' : 'sampled'}</p>
    <table class="data compact"><thead><tr><th>kind</th><th class="num">allocation (shards)</th>
    <th class="num">usage</th><th class="num">entitlement</th><th class="num">limit in force</th><th>degraded</th></tr></thead>
    <tbody>${rows}</tbody></table>`);
}

function decisionsTable(ds) {
  if (!ds.length) return html('<p class="muted">No decisions yet.</p>');
  return html(`<table class="data"><thead><tr><th>time</th><th>kind</th><th class="num">shards</th>
    <th>why</th><th>outcome</th></tr></thead><tbody>${ds.map((d) => `<tr><td class="nowrap">${esc(fmtTime(d.at))}</td>
    <td>${esc(d.kind)}</td><td class="num nowrap">${esc(d.from)} → ${esc(d.to)}</td><td>${esc(d.why)}</td>
    <td>${d.mode ? `${badge(d.mode)} ` : ''}${esc(d.outcome)}</td></tr>`).join('')}</tbody></table>`);
}

// ---------------------------------------------------------------------------------------------
// #/market: per host its price history, its pool and the caller's leases; shard requests

function leasesTable(leases, who) {
  if (!leases?.length) return `<p class="muted">No ${who} leases here.</p>`;
  return `<table class="data compact"><thead><tr><th class="num">lease</th><th class="num">workload</th><th>lender</th>
    <th>shards</th><th>price / shard-hour</th><th>window</th><th></th></tr></thead><tbody>${leases.map((l) => `<tr>
    <td class="num">${esc(l.id)}</td><td class="num"><a href="#/workloads/${encodeURIComponent(l.workload)}">${esc(l.workload)}</a></td>
    <td>${esc(l.lender)}</td><td>${esc(fmtShards(l.shards))}</td>
    <td>${esc(KINDS.filter((k) => l.shards?.[k]).map((k) => `${k} ${l.price?.[k]}`).join(' · '))}</td>
    <td class="nowrap">${esc(fmtWindow(l.window))}</td><td>${l.reclaiming ? badge('reclaiming') : ''}</td></tr>`).join('')}</tbody></table>`;
}

function pageMarket(ctx) {
  if (needToken(ctx, 'Market')) return;
  const hostsEl = h('div');
  const requestsEl = h('div', { class: 'table-wrap' });
  view.append(h('h1', {}, 'Market'), hostsEl, h('h2', {}, 'Shard requests'), requestsEl);
  run(ctx, 'market', async () => {
    const o = await api('/v1/overview');
    const names = (o.hosts || []).map((x) => x.name);
    const [reqs, ...perHost] = await Promise.all([
      api('/v1/shard-requests'),
      ...names.map((n) => Promise.all([
        api(`/v1/hosts/${encodeURIComponent(n)}/market/history?period=1d&limit=1000`),
        api(`/v1/hosts/${encodeURIComponent(n)}/market`),
      ])),
    ]);
    if (!ctx.live()) return;
    const drawn = [];
    // The admin's token sees every tenant's leases, not its own.
    const your = token().startsWith('sxt_') ? 'Your ' : 'All ';
    if (!names.length) hostsEl.append(h('p', { class: 'muted' }, 'No hosts yet.'));
    perHost.forEach(([hist, m], i) => {
      const el = h('div', { class: 'chart', 'data-host': names[i] });
      const pts = [...(hist.points || [])].sort((a, b) => Date.parse(a.at) - Date.parse(b.at));
      const pool = html(`<table class="data compact"><thead><tr><th>kind</th><th class="num">price now</th>
        <th class="num">offered</th><th class="num">leased</th><th class="num">waiting</th></tr></thead><tbody>${KINDS.map((k) => `<tr>
        <td>${k}</td><td class="num">${m.price ? esc(m.price[k]) : '<span class="muted">unpriced</span>'}</td>
        <td class="num">${m.offered?.[k] ?? 0}</td><td class="num">${m.leased?.[k] ?? 0}</td><td class="num">${m.waiting?.[k] ?? 0}</td></tr>`).join('')}</tbody></table>`);
      hostsEl.append(h('section', { class: 'card' },
        h('h2', {}, names[i]),
        h('h3', {}, 'Price per shard-hour, last day ', h('span', { class: 'muted small' },
          pts.length ? `${pts.length} change${pts.length === 1 ? '' : 's'}` : 'no price set in the last day')),
        el,
        h('div', { class: 'cols' },
          h('div', {}, h('h3', {}, 'Pool now'), pool),
          h('div', {}, h('h3', {}, `${your}borrowed leases`), html(leasesTable(m.borrowed, 'borrowed')),
            h('h3', {}, `${your}lent leases`), html(leasesTable(m.lent, 'lent'))))));
      const data = [pts.map((p) => Date.parse(p.at) / 1000), ...KINDS.map((k) => pts.map((p) => {
        const v = parseFloat(p.price?.[k]);
        return Number.isFinite(v) ? v : null;
      }))];
      drawn.push(chart(ctx, el, {
        height: 200,
        scales: { x: { time: true, range: padX }, y: { range: fromZero } },
        axes: [xAxis(), yAxis((v) => sig(v))],
        series: [xSeries(), ...KINDS.map((k) => ({
          label: k, stroke: KIND_COLOR[k], width: 2, paths: uPlot.paths.stepped({ align: 1 }),
          value: (u, v) => (v == null ? '–' : String(v)), points: { show: (u) => u.data[0].length < 40 },
        }))],
      }, data).drawn);
    });
    const rs = reqs.shard_requests || [];
    // A request is a workload's (the market could not cover it) or a pending modification's.
    const whose = (r) => (r.workload != null
      ? `<a href="#/workloads/${encodeURIComponent(r.workload)}">workload ${esc(r.workload)}</a>`
      : `modification ${esc(r.modification)}`);
    requestsEl.replaceChildren(html(rs.length ? `<table class="data"><thead><tr><th class="num">id</th><th>for</th>
      <th>host</th><th>wanted</th><th>raised</th><th>status</th><th>steps</th></tr></thead><tbody>${rs.map((r) => `<tr>
      <td class="num">${esc(r.id)}</td><td>${whose(r)}</td>
      <td>${esc(r.host)}</td><td>${esc(fmtShards(r.wanted))}</td><td class="nowrap">${esc(fmtTime(r.raised))}</td>
      <td>${badge(r.status)}${r.reason ? `<div class="small">${esc(r.reason)}</div>` : ''}</td>
      <td>${esc((r.steps || []).map((s) => `${s.step} (${fmtShards(s.shards)})`).join(' → ') || '–')}</td></tr>`).join('')}</tbody></table>`
      : '<p class="muted">No shard requests.</p>'));
    await Promise.all(drawn);
  });
}

// ---------------------------------------------------------------------------------------------
// #/reservations: reservations, their modifications, and the modification form

async function allReservations() {
  const items = [];
  let after = null;
  // Pages of 1,000 by id; 20 pages is far more than a dashboard should draw.
  for (let i = 0; i < 20; i++) {
    const page = await api(`/v1/reservations?limit=1000${after == null ? '' : `&after=${after}`}`);
    items.push(...(page.items || []));
    if (page.next == null) break;
    after = page.next;
  }
  return items;
}

/** "cpu=+10%, memory==8" -> {cpu: "+10%", memory: "=8"}; throws a readable Error. */
function parseChanges(text) {
  const changes = {};
  const parts = text.split(/[,\s]+/).filter(Boolean);
  if (!parts.length) throw new Error('Changes: write at least one, e.g. cpu=+10% or cpu=+10%,memory==8');
  for (const part of parts) {
    const i = part.indexOf('=');
    const kind = part.slice(0, i).toLowerCase();
    const change = part.slice(i + 1);
    if (i <= 0 || !change) throw new Error(`Changes: "${part}" is not kind=change (e.g. cpu=+10%)`);
    if (!KINDS.includes(kind)) throw new Error(`Changes: "${kind}" is not one of ${KINDS.join(', ')}`);
    if (kind in changes) throw new Error(`Changes: ${kind} is given twice`);
    changes[kind] = change;
  }
  return changes;
}

function outcomeHtml(o) {
  const q = o.quote || {};
  const r = o.reservation || {};
  const m = o.modification;
  return `<div class="price" id="mod-price">${esc(q.cost ?? '–')}</div>
    <div class="muted">${o.dry_run ? 'would cost' : 'costs'} this much extra (currency units of the price table),
      priced ${esc(fmtTime(q.from))} → ${esc(fmtTime(q.until))}</div>
    <p>Outcome: ${badge(o.outcome)} ${o.dry_run ? '<b>dry run: nothing committed</b>' : `<b>committed</b>${m?.id != null ? ` as modification ${esc(m.id)}` : ''}`}</p>
    ${o.reason ? `<p>${esc(o.reason)}</p>` : ''}
    <p>Reservation ${esc(r.id)} ${o.dry_run ? 'would hold' : 'holds'}: <b>${esc(fmtShards(r.now))}</b>
      <span class="muted">(base ${esc(fmtShards(r.base))})</span></p>
    ${m ? `<p class="muted">Modification ${esc(Object.entries(m.changes || {}).map(([k, v]) => `${k} ${v}`).join(', '))},
      ${esc(fmtWindow(m.window))}, ${esc(m.state)}${m.gives_up_at ? `, gives up at ${esc(fmtTime(m.gives_up_at))}` : ''}</p>` : ''}`;
}

/** A refusal: the problem's title and detail first (e.g. infeasible: host capacity exceeded,
 *  with the shards the host has), then the request that was refused. Nothing was committed. */
function problemHtml(e) {
  const p = e.problem;
  // Without a problem document, or when the message carries advice (401, 429), it is shown whole.
  if (!p || !(p.title || p.detail) || e.status === 401 || e.status === 429) {
    return `<div class="error">${p?.outcome ? `${badge(p.outcome)} ` : ''}${esc(e.message)}</div>`;
  }
  return `<div class="error">${p.outcome ? `${badge(p.outcome)} ` : ''}<b>${esc(p.title || `error ${e.status}`)}</b>${
    p.detail ? `: ${esc(p.detail)}` : ''}<div class="small">${esc(e.message.split(': ')[0])}: ${
    esc(e.status)}; nothing was committed.</div></div>`;
}

function pageReservations(ctx) {
  if (needToken(ctx, 'Reservations')) return;
  const tables = h('div', { class: 'table-wrap' });
  view.append(h('h1', {}, 'Reservations'), html(`<section class="card"><h2>Modify a reservation</h2>
    <form id="mod-form" autocomplete="off">
      <label>Reservation <select id="mod-reservation"></select></label>
      <label>Changes <input id="mod-changes" placeholder="cpu=+10% or cpu=+10%,memory==8" size="34"></label>
      <label>For <input id="mod-for" value="1h" size="6"></label>
      <button id="mod-dry-run" type="button" disabled>Dry run</button>
      <button id="mod-submit" type="button" disabled>Submit</button>
    </form>
    <p class="muted small">Per kind: +10%, -25%, +4, -2 or =8 shards, or an amount with its unit (+500m, =2cores, +1GiB, =100Mbit, +200iops).
      Submit is enabled once a dry run of the same inputs succeeded.</p>
    <p id="mod-admin" class="notice" hidden>This is the admin token: a modification acts as the reservation's tenant, so a dry run or a submit with it is refused (403). Save that tenant's token (sxt_…) to modify its reservations.</p>
    <div id="mod-quote" aria-live="polite"></div></section>`),
  h('h2', {}, token().startsWith('sxt_') ? 'Your reservations' : 'All reservations'), tables);
  const $ = (id) => document.getElementById(id);
  const [select, changesIn, forIn, dryBtn, submitBtn, quote] =
    ['mod-reservation', 'mod-changes', 'mod-for', 'mod-dry-run', 'mod-submit', 'mod-quote'].map($);
  $('mod-admin').hidden = token().startsWith('sxt_');
  // Dry run waits for the reservations to be listed: clicked before, it would have none to quote.
  let listed = false;

  // What the last successful dry run was for, and the Idempotency-Key made for that form
  // fill: a double click or a retry of the submit sends the same key, so it applies once.
  let quoted = null;
  let key = null;
  const read = () => {
    const id = select.value;
    if (!id) throw new Error('Choose a reservation (none is active or scheduled).');
    const duration = forIn.value.trim();
    if (!duration) throw new Error('For: how long, e.g. 1h');
    return { id, body: { changes: parseChanges(changesIn.value), for: duration } };
  };
  const fingerprint = (f) => JSON.stringify(f);
  const sync = () => {
    let f = null;
    try { f = fingerprint(read()); } catch { /* incomplete: stays disabled */ }
    submitBtn.disabled = f === null || f !== quoted;
  };
  $('mod-form').addEventListener('input', sync);
  $('mod-form').addEventListener('change', sync);
  $('mod-form').addEventListener('submit', (e) => { e.preventDefault(); dryBtn.click(); });

  dryBtn.addEventListener('click', async () => {
    let f;
    try { f = read(); } catch (e) { quote.innerHTML = problemHtml(e); return; }
    dryBtn.disabled = true;
    submitBtn.disabled = true;
    quote.innerHTML = '<p class="muted">Asking for a quote…</p>';
    try {
      const o = await api(`/v1/reservations/${encodeURIComponent(f.id)}/modifications?dry_run=true`, { method: 'POST', body: f.body });
      quote.innerHTML = outcomeHtml(o);
      quoted = fingerprint(f);
      key = uuid();
    } catch (e) {
      quoted = null;
      quote.innerHTML = problemHtml(e);
    } finally {
      dryBtn.disabled = !listed;
      sync();
    }
  });

  submitBtn.addEventListener('click', async () => {
    let f;
    try { f = read(); } catch (e) { quote.innerHTML = problemHtml(e); return; }
    if (fingerprint(f) !== quoted || !key) return;
    submitBtn.disabled = true;
    try {
      const o = await api(`/v1/reservations/${encodeURIComponent(f.id)}/modifications`, {
        method: 'POST', body: f.body, headers: { 'Idempotency-Key': key },
      });
      quote.innerHTML = outcomeHtml(o);
      quoted = null; // the reservation changed: the next one needs a fresh quote (and key)
      sync();
      if (ctx.live()) run(ctx, 'reservations', load);
    } catch (e) {
      // Kept enabled with the same key: a retry is safe (the server answers it once).
      quote.innerHTML = problemHtml(e);
      submitBtn.disabled = false;
    }
  });

  const load = async () => {
    const rs = await allReservations();
    // Only reservations with modifications are asked about theirs (a token is rate limited).
    // A refusal (the admin's token is refused some) is shown in its row, not as the page's.
    const mods = await mapLimit(rs, 4, (r) => (r.modifications?.length
      ? api(`/v1/reservations/${r.id}/modifications`).then((x) => x.modifications || [], (e) => e) : []));
    if (!ctx.live()) return;
    const was = select.value;
    const open = rs.filter((r) => r.state === 'active' || r.state === 'scheduled');
    select.innerHTML = open.length
      ? open.map((r) => `<option value="${esc(r.id)}">${esc(`#${r.id} on ${r.host} (${r.state}, ${fmtShards(r.now)})`)}</option>`).join('')
      : '<option value="">no active or scheduled reservation</option>';
    if (open.some((r) => String(r.id) === was)) select.value = was;
    listed = true;
    dryBtn.disabled = false;
    sync();
    tables.replaceChildren(html(rs.length ? `<table class="data reservations"><thead><tr><th class="num">id</th><th>host</th>
      <th>tier</th><th>state</th><th>base</th><th>now</th><th>window</th><th>offered</th><th>modifications</th></tr></thead>
      <tbody>${rs.map((r, i) => `<tr><td class="num">${esc(r.id)}</td><td class="nowrap">${esc(r.host)}</td><td>${esc(r.tier)}</td>
      <td>${badge(r.state)}</td><td>${esc(fmtShards(r.base))}</td><td><b>${esc(fmtShards(r.now))}</b></td>
      <td class="nowrap">${esc(fmtWindow(r.window))}</td><td>${esc(fmtShards(r.offered))}</td>
      <td>${mods[i] instanceof Error ? `<span class="bad small">${esc(mods[i].message)}</span>`
        : mods[i].length ? `<ul class="mods">${mods[i].map((m) => `<li>#${esc(m.id)} ${esc(Object.entries(m.changes || {})
        .map(([k, v]) => `${k} ${v}`).join(', '))} ${badge(m.state)} <span class="muted small">${esc(fmtWindow(m.window))}</span></li>`).join('')}</ul>`
        : '<span class="muted">none</span>'}</td></tr>`).join('')}</tbody></table>` : '<p class="muted">No reservations.</p>'));
  };
  run(ctx, 'reservations', load);
}

// ---------------------------------------------------------------------------------------------
// #/bill: the invoice for a period

/** A decimal string cut to `places` decimals for reading (the ledger's shard-hours come with 28);
 *  anything else is shown as it is. */
function fmtDecimal(s, places) {
  const t = String(s ?? '');
  const m = /^(-?\d+)\.(\d+)$/.exec(t);
  if (!m || m[2].length <= places) return t;
  return String(+Number(t).toFixed(places));
}

function pageBill(ctx) {
  if (needToken(ctx, 'Bill')) return;
  const admin = !token().startsWith('sxt_');
  const out = h('div');
  const period = h('select', { id: 'bill-period' },
    [['24h', 'last 24 hours'], ['7d', 'last 7 days'], ['30d', 'last 30 days'], ['90d', 'last 90 days'], ['', 'everything']]
      .map(([v, t]) => h('option', { value: v, selected: v === '30d' }, t)));
  // The admin's token has no tenant of its own: it names whose invoice (by name or id). The
  // tenants are offered as suggestions and the first is shown at once, not a 400 asking for one.
  const tenants = h('datalist', { id: 'bill-tenants' });
  const tenant = h('input', { id: 'bill-tenant', size: 14, list: 'bill-tenants', placeholder: 'tenant name or id' });
  let names = null; // id -> name, for the admin
  const load = async () => {
    if (admin && !names) {
      // Only suggestions: without the list the tenant can still be typed.
      const ts = await api('/v1/tenants').then((x) => x.tenants || [], () => null);
      if (!ctx.live()) return;
      names = new Map((ts || []).map((t) => [String(t.id), t.name]));
      tenants.replaceChildren(...(ts || []).map((t) => h('option', { value: t.name }, `#${t.id}`)));
      if (!tenant.value.trim() && ts?.length) tenant.value = ts[0].name;
      if (ts && !ts.length) {
        out.replaceChildren(h('p', { class: 'muted' }, 'No tenants yet: there is no invoice to show.'));
        return;
      }
    }
    if (admin && !tenant.value.trim()) {
      out.replaceChildren(h('p', { class: 'muted' }, 'Name the tenant whose invoice to show, then press Show.'));
      return;
    }
    const q = new URLSearchParams();
    if (period.value) q.set('period', period.value);
    if (admin) q.set('tenant', tenant.value.trim());
    const inv = await api(`/v1/invoice${String(q) ? `?${q}` : ''}`);
    if (!ctx.live()) return;
    const lines = inv.lines || [];
    const neg = (s) => (String(s).startsWith('-') ? ' credit' : '');
    const who = names?.get(String(inv.tenant));
    out.replaceChildren(html(`<p>Tenant ${who ? `<b>${esc(who)}</b> #${esc(inv.tenant)}` : esc(inv.tenant)} · ${esc(fmtTime(inv.from))} → ${esc(fmtTime(inv.to))}</p>
      <table class="data invoice"><thead><tr><th>what</th><th class="num">shard-hours</th><th class="num">unit price</th>
      <th class="num">amount</th></tr></thead><tbody>${lines.map((l) => `<tr><td>${esc(l.what)}</td>
      <td class="num" title="${esc(l.shard_hours)}">${esc(fmtDecimal(l.shard_hours, 4))}</td><td class="num${neg(l.unit_price)}">${esc(l.unit_price)}</td>
      <td class="num${neg(l.amount)}">${esc(l.amount)}</td></tr>`).join('')
      || '<tr><td colspan="4" class="muted">Nothing charged in this period.</td></tr>'}</tbody>
      <tfoot><tr><th colspan="3">Total</th><th class="num total" id="bill-total">${esc(inv.total)}</th></tr></tfoot></table>`));
  };
  view.append(h('h1', {}, 'Bill'),
    h('form', { class: 'toolbar', onsubmit: (e) => { e.preventDefault(); run(ctx, 'bill', load); } },
      h('label', {}, 'Period ', period),
      admin ? h('label', {}, 'Tenant ', tenant, tenants) : null,
      h('button', { type: 'submit' }, 'Show')),
    out);
  period.addEventListener('change', () => run(ctx, 'bill', load));
  tenant.addEventListener('change', () => run(ctx, 'bill', load));
  run(ctx, 'bill', load);
}

// ---------------------------------------------------------------------------------------------
// Start: the token box, then the page the address names

function showTokenState() {
  const t = token();
  document.getElementById('token-state').textContent =
    !t ? 'no token' : t.startsWith('sxt_') ? 'tenant token' : 'admin token';
}

(function start() {
  const input = document.getElementById('token');
  input.value = token();
  const save = () => {
    const v = input.value.trim();
    if (v) sessionStorage.setItem(TOKEN_KEY, v);
    else sessionStorage.removeItem(TOKEN_KEY);
    showTokenState();
    route(); // what the page may read changed
  };
  // A form, so Enter saves too (and browsers don't warn about a loose password field).
  document.getElementById('token-form').addEventListener('submit', (e) => { e.preventDefault(); save(); });
  showTokenState();
  addEventListener('hashchange', route);
  if (typeof uPlot === 'undefined') {
    const ctx = current = newPage();
    fail(ctx, 'uPlot did not load (/assets/vendor/uPlot.iife.min.js): charts cannot be drawn.');
    return;
  }
  route();
})();
