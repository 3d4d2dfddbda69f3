// gogate console: polls GET /ui/state every second with the admin token from this tab's
// session storage, derives rates and per-second p50/p99 from the difference between two
// polls, and renders (sections.js). Drain/undrain call the admin API's own endpoints; the
// explain form calls /explain (explain.js). No data is ever inserted as markup.

import {fmtDuration, fmtMs, fmtRate, fmtTime, setText, sparkline} from './view.js';
import {renderListeners, renderRegistry, renderReloads, renderRoutes, renderUpstreams} from './sections.js';
import {initExplain} from './explain.js';

const TOKEN_KEY = 'gogate.adminToken';
const POLL_MS = 1000;
const SPAN_S = 120; // sparkline window at most (less until that much history exists)
const MIN_SPAN_S = 30;
const $ = (id) => document.getElementById(id);

const ui = {
  last: null, // the last state received
  prev: null, // {t, total, failure, buckets} of the previous poll
  samples: [], // [{t, rps, p50, p99}] of the last SPAN_S seconds
  backendPrev: new Map(), // "upstream|addr" -> {t, requests, failures}
  rates: new Map(), // "upstream|addr" -> {rps, fps}
  pending: new Set(), // addresses with a drain/undrain call in flight
  hl: null, // explain highlights: {route, chosen: Set, next: Set}
  paused: false, timer: 0, inflight: false, again: false,
  banners: new Map(),
};

// ---- token and calls ------------------------------------------------------------------

function token() {
  try { return sessionStorage.getItem(TOKEN_KEY) || ''; } catch { return ''; }
}

export class CallError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

// Fetches JSON from the admin API with the token (when one is kept); 401 asks for the token.
export async function api(path, method = 'GET') {
  const headers = {Accept: 'application/json'};
  const t = token();
  if (t) headers.Authorization = 'Bearer ' + t;
  let res;
  try {
    res = await fetch(path, {method, headers, cache: 'no-store', credentials: 'omit'});
  } catch (e) {
    throw new CallError(0, 'the gateway is unreachable (' + (e && e.message ? e.message : e) + ')');
  }
  const text = await res.text();
  let body = null;
  try { body = text ? JSON.parse(text) : null; } catch { body = null; }
  if (res.status === 401) {
    askToken(t ? 'That token was refused (401): enter the right one.' : '');
    throw new CallError(401, 'admin token needed');
  }
  if (!res.ok) {
    const why = body && typeof body.error === 'string' ? body.error : res.statusText;
    throw new CallError(res.status, res.status + ' ' + (why || 'error'));
  }
  return body;
}

function askToken(message) {
  ui.paused = true;
  clearTimeout(ui.timer);
  $('token-panel').hidden = false;
  $('main').classList.add('locked');
  const err = $('token-error');
  err.hidden = !message;
  err.textContent = message;
  setConn('token needed', 'warn');
  clearBanner('poll');
  $('token-input').focus();
}

function initToken() {
  $('token-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const value = $('token-input').value.trim();
    if (!value) return;
    try { sessionStorage.setItem(TOKEN_KEY, value); } catch { /* storage off: kept nowhere */ }
    $('token-input').value = '';
    $('token-panel').hidden = true;
    $('main').classList.remove('locked');
    ui.paused = false;
    refreshForget();
    poll();
  });
  $('forget-token').addEventListener('click', () => {
    try { sessionStorage.removeItem(TOKEN_KEY); } catch { /* nothing kept */ }
    refreshForget();
    ui.paused = false;
    poll();
  });
  refreshForget();
}

function refreshForget() {
  $('forget-token').hidden = !token();
}

// ---- banners --------------------------------------------------------------------------

function showBanner(kind, message) {
  ui.banners.set(kind, message);
  drawBanner();
}

function clearBanner(kind) {
  if (ui.banners.delete(kind)) drawBanner();
}

function drawBanner() {
  const b = $('banner');
  const lines = [...ui.banners.values()];
  b.hidden = lines.length === 0;
  b.replaceChildren(...lines.map((l) => {
    const d = document.createElement('div');
    d.textContent = l;
    return d;
  }));
}

function setConn(text, tone) {
  const c = $('conn');
  c.textContent = text;
  c.className = 'badge ' + tone;
}

// ---- polling --------------------------------------------------------------------------

export async function poll() {
  clearTimeout(ui.timer);
  if (ui.paused) return;
  if (ui.inflight) { ui.again = true; return; }
  ui.inflight = true;
  try {
    const st = await api('/ui/state');
    derive(st);
    ui.last = st;
    render();
    clearBanner('poll');
    setConn('live', 'ok');
  } catch (e) {
    if (e.status !== 401) {
      showBanner('poll', 'Could not refresh: ' + e.message + '. Retrying every second; the data shown may be stale.');
      setConn(e.status === 0 ? 'unreachable' : 'error', 'bad');
    }
  } finally {
    ui.inflight = false;
    if (!ui.paused) ui.timer = setTimeout(poll, ui.again ? 0 : POLL_MS);
    ui.again = false;
  }
}

// The q quantile of a histogram of log buckets (bucket i: below 2^((i+1)/4) - 1 µs), in ms.
function quantile(counts, q) {
  const total = counts.reduce((a, b) => a + b, 0);
  if (total === 0) return null;
  const rank = Math.max(1, Math.ceil(total * q));
  let seen = 0;
  for (let i = 0; i < counts.length; i++) {
    seen += counts[i];
    if (seen >= rank) return (Math.pow(2, (i + 1) / 4) - 1) / 1000;
  }
  return null;
}

function derive(st) {
  const t = st.uptime_seconds;
  const req = st.stats.requests;
  const buckets = st.stats.latency.buckets;
  const p = ui.prev;
  if (p && t < p.t) { // the gateway restarted: start over
    ui.samples = [];
    ui.backendPrev.clear();
  }
  if (p && t > p.t) {
    const dt = t - p.t;
    const delta = buckets.map((c, i) => Math.max(0, c - (p.buckets[i] || 0)));
    ui.samples.push({
      t,
      rps: Math.max(0, req.total - p.total) / dt,
      fps: Math.max(0, req.failure - p.failure) / dt,
      p50: quantile(delta, 0.5),
      p99: quantile(delta, 0.99),
    });
    while (ui.samples.length && ui.samples[0].t < t - SPAN_S) ui.samples.shift();
  }
  ui.prev = {t, total: req.total, failure: req.failure, buckets};
  const seen = new Map();
  for (const u of st.upstreams) {
    for (const b of u.backends) {
      const key = u.name + '|' + b.addr;
      const old = ui.backendPrev.get(key);
      if (old && t > old.t) {
        ui.rates.set(key, {
          rps: Math.max(0, b.requests_total - old.requests) / (t - old.t),
          fps: Math.max(0, b.failures_total - old.failures) / (t - old.t),
        });
      }
      seen.set(key, {t, requests: b.requests_total, failures: b.failures_total});
    }
  }
  ui.backendPrev = seen;
  for (const k of ui.rates.keys()) if (!seen.has(k)) ui.rates.delete(k);
}

// ---- rendering ------------------------------------------------------------------------

export function render() {
  const st = ui.last;
  if (!st) return;
  setText('generation', String(st.generation));
  setText('server-time', fmtTime(st.time));
  setText('uptime', fmtDuration(st.uptime_seconds));
  const s = ui.samples[ui.samples.length - 1];
  setText('m-rps', s ? fmtRate(s.rps) : '–');
  setText('m-fps', s ? fmtRate(s.fps) : '–');
  setText('m-p50', s && s.p50 !== null ? fmtMs(s.p50) : 'no requests');
  setText('m-p99', s && s.p99 !== null ? fmtMs(s.p99) : 'no requests');
  setText('m-conn', String(st.stats.connections.active));
  setText('m-total', String(st.stats.requests.total));
  const now = st.uptime_seconds;
  const first = ui.samples.length ? ui.samples[0].t : now;
  const span = Math.min(SPAN_S, Math.max(MIN_SPAN_S, Math.ceil((now - first) / 10) * 10));
  const words = span >= SPAN_S ? 'last 2 minutes' : 'last ' + span + ' s';
  setText('rps-window', words);
  setText('lat-window', words);
  const rpsMax = sparkline($('spark-rps'), [{cls: 'rps', values: ui.samples.map((x) => [x.t, x.rps])}], now, span);
  setText('rps-peak', 'peak ' + fmtRate(rpsMax) + '/s');
  const latMax = sparkline($('spark-lat'), [
    {cls: 'p99', values: ui.samples.map((x) => [x.t, x.p99])},
    {cls: 'p50', values: ui.samples.map((x) => [x.t, x.p50])},
  ], now, span);
  setText('lat-peak', latMax > 0 ? 'peak ' + fmtMs(latMax) : 'no requests yet');
  const ctx = {hl: ui.hl, rates: ui.rates, pending: ui.pending};
  renderUpstreams($('upstreams'), st.upstreams, ctx);
  renderRoutes($('routes'), st.routes, st.default_route, ctx);
  renderReloads($('reloads'), st.reloads);
  renderListeners($('listeners'), st.listeners);
  renderRegistry($('registry'), $('registry-note'), st.registry);
}

// ---- drain / undrain ------------------------------------------------------------------

async function setDrain(addr, drain) {
  ui.pending.add(addr);
  render();
  try {
    await api('/backends/' + encodeURIComponent(addr) + '/drain', drain ? 'POST' : 'DELETE');
    clearBanner('action');
  } catch (e) {
    if (e.status !== 401) showBanner('action', (drain ? 'Drain' : 'Undrain') + ' of ' + addr + ' failed: ' + e.message);
  } finally {
    ui.pending.delete(addr);
    poll();
  }
}

function initActions() {
  $('upstreams').addEventListener('click', (ev) => {
    const btn = ev.target.closest('button[data-action]');
    if (!btn || btn.disabled) return;
    const addr = btn.dataset.addr;
    if (btn.dataset.action === 'drain') setDrain(addr, true);
    else if (btn.dataset.action === 'undrain') setDrain(addr, false);
  });
}

function setHighlight(hl) {
  ui.hl = hl;
  render();
}

initToken();
initActions();
initExplain({api, setHighlight, CallError});
poll();
