// gogate console: the sections built from one /ui/state document (upstreams and backends,
// routes, reload history, listeners, registry). Status is always a word as well as a colour.

import {badge, el, emptyRow, fmtDateTime, fmtDuration, fmtRate, fmtTime, syncRows} from './view.js';

const BACKEND_COLUMNS = ['backend', 'weight', 'health', 'breaker', 'state', 'active', 'req/s',
  'fail/s', 'requests', 'failures', 'last check', 'action'];

function healthSpec(b) {
  return b.healthy ? {badge: 'healthy', tone: 'ok'} : {badge: 'unhealthy', tone: 'bad'};
}

function breakerSpec(b, enabled) {
  if (!enabled) return {badge: 'off', tone: 'muted'};
  if (b.circuit_breaker === 'open') return {badge: 'open', tone: 'bad'};
  if (b.circuit_breaker === 'half_open') return {badge: 'half-open', tone: 'warn'};
  return {badge: 'closed', tone: 'ok'};
}

function drainSpec(b) {
  return b.draining ? {badge: 'draining', tone: 'warn'} : {badge: 'in rotation', tone: 'ok'};
}

// One block per upstream, each with its backend table (kept between polls, keyed by name).
export function renderUpstreams(root, upstreams, ctx) {
  const blocks = new Map();
  for (const node of root.children) blocks.set(node.dataset.name, node);
  let prev = null;
  for (const u of upstreams) {
    let block = blocks.get(u.name);
    if (block) blocks.delete(u.name);
    else block = upstreamBlock(u.name);
    const want = prev ? prev.nextSibling : root.firstChild;
    if (want !== block) root.insertBefore(block, want);
    prev = block;
    const meta = block.querySelector('.up-meta');
    const words = [u.load_balancer.replace(/_/g, ' '),
      u.health_checks ? 'health checks on' : 'health checks off',
      u.circuit_breaker ? 'breaker on' : 'breaker off',
      'retries ' + u.retry_attempts,
      u.backends.length + (u.backends.length === 1 ? ' backend' : ' backends')];
    const healthy = u.backends.filter((b) => b.healthy && !b.draining).length;
    const text = words.join(' · ') + ' · ' + healthy + ' serving';
    if (meta.textContent !== text) meta.textContent = text;
    const tbody = block.querySelector('tbody');
    if (u.backends.length === 0) {
      emptyRow(tbody, BACKEND_COLUMNS.length, 'No backends (yet): a host name not resolved, or none configured.');
      continue;
    }
    if (tbody.querySelector('tr.empty')) tbody.replaceChildren();
    syncRows(tbody, u.backends, (b) => u.name + '|' + b.addr, (b) => backendCells(u, b, ctx),
      (b) => backendClass(u, b, ctx), BACKEND_COLUMNS);
  }
  for (const b of blocks.values()) b.remove();
}

function upstreamBlock(name) {
  const head = el('tr', null, ...BACKEND_COLUMNS.map((c) => el('th', {scope: 'col'}, c)));
  return el('div', {class: 'upstream', data: {name}},
    el('h3', null, 'upstream ', el('code', null, name)),
    el('p', {class: 'up-meta hint'}),
    el('div', {class: 'scroll'},
      el('table', {class: 'data stack backends'}, el('thead', null, head), el('tbody'))));
}

function backendMark(u, b, hl) {
  const key = u.name + '|' + b.addr;
  if (hl && hl.chosen.has(key)) return {badge: 'explain: chosen', tone: 'hl'};
  if (hl && hl.next.has(key)) return {badge: 'explain: next', tone: 'hl'};
  return null;
}

function backendCells(u, b, ctx) {
  const r = ctx.rates.get(u.name + '|' + b.addr);
  const name = [{code: b.addr}];
  if (b.hostname) name.push('(' + b.hostname + ')');
  if (b.source === 'registry') name.push({badge: 'registry', tone: 'muted'});
  const mark = backendMark(u, b, ctx.hl);
  if (mark) name.push(mark);
  const check = b.last_error ? {lines: [fmtTime(b.last_check), b.last_error]} : fmtTime(b.last_check);
  const pending = ctx.pending.has(b.addr);
  const action = b.draining
    ? {button: 'Undrain', action: 'undrain', addr: b.addr, disabled: pending, cls: 'secondary',
      label: 'Undrain ' + b.addr}
    : {button: 'Drain', action: 'drain', addr: b.addr, disabled: pending, label: 'Drain ' + b.addr};
  return [{parts: name}, b.weight, healthSpec(b), breakerSpec(b, u.circuit_breaker), drainSpec(b),
    b.active_connections, r ? fmtRate(r.rps) : '–', r ? fmtRate(r.fps) : '–', b.requests_total,
    b.failures_total, check, action];
}

function backendClass(u, b, ctx) {
  const cls = [];
  if (!b.healthy || b.circuit_breaker === 'open') cls.push('down');
  else if (b.draining) cls.push('drained');
  if (backendMark(u, b, ctx.hl)) cls.push('hl');
  return cls.join(' ');
}

const ROUTE_COLUMNS = ['#', 'route', 'match', 'upstreams'];

export function renderRoutes(tbody, routes, fallback, ctx) {
  const rows = routes.slice();
  if (fallback) rows.push(fallback);
  if (rows.length === 0) {
    emptyRow(tbody, ROUTE_COLUMNS.length, 'No routes and no default upstream backends.');
    return;
  }
  if (tbody.querySelector('tr.empty')) tbody.replaceChildren();
  syncRows(tbody, rows, (r) => (r.rank === null ? '(default)' : r.name), (r) => routeCells(r, ctx.hl),
    (r) => (ctx.hl && ctx.hl.route === r.name && (r.rank === null) === ctx.hl.isDefault ? 'hl' : ''),
    ROUTE_COLUMNS);
}

function routeCells(r, hl) {
  const name = [{code: r.name}];
  if (r.rank === null) name.push('(no route matched)');
  if (hl && hl.route === r.name && (r.rank === null) === hl.isDefault) name.push({badge: 'explain: chosen', tone: 'hl'});
  const words = (r.specificity || []).filter((w) => w !== 'no method or header condition' &&
    !/^route #\d+ in the file$/.test(w) && !/^the default upstream/.test(w));
  const flags = [];
  if (r.strip_prefix) flags.push('strips ' + r.strip_prefix);
  if (!r.preserve_host) flags.push('Host set to the backend');
  if (r.auth) flags.push('JWT');
  if (r.rate_limit) flags.push('rate limit');
  if (r.cors) flags.push('CORS');
  const total = r.upstreams.reduce((a, t) => a + t.weight, 0);
  const ups = r.upstreams.map((t) => r.upstreams.length === 1 ? t.name
    : t.name + ' ×' + t.weight + ' (' + (total ? Math.round((100 * t.weight) / total) : 0) + '%)');
  return [r.rank === null ? '–' : r.rank, {parts: name},
    {lines: flags.length ? words.concat(flags.join(', ')) : words}, {lines: ups}];
}

// ---- reload history -------------------------------------------------------------------

let reloadsSig = '';

export function renderReloads(list, reloads) {
  const sig = JSON.stringify(reloads);
  if (sig === reloadsSig) return;
  reloadsSig = sig;
  if (!reloads.length) {
    list.replaceChildren(el('li', {class: 'empty'}, 'No reload since start.'));
    return;
  }
  list.replaceChildren(...reloads.map(reloadItem));
}

function reloadItem(r) {
  const ok = r.result === 'success';
  const head = el('div', {class: 'reload-head'},
    badge(ok ? 'success' : 'failed', ok ? 'ok' : 'bad'),
    el('span', null, 'generation ', el('b', null, String(r.generation))),
    el('span', {class: 'hint'}, r.trigger),
    el('time', {datetime: r.time, class: 'hint'}, fmtDateTime(r.time)));
  const body = [];
  if (r.error) body.push(el('p', {class: 'error-text'}, r.error));
  if (r.diff) body.push(diffList(r.diff));
  if (r.restart_required && r.restart_required.length) {
    body.push(el('p', {class: 'warn-text'}, 'needs a restart: ' + r.restart_required.join(', ')));
  }
  return el('li', {class: 'reload ' + (ok ? 'ok' : 'bad'), data: {generation: String(r.generation)}}, head, ...body);
}

function diffList(d) {
  const items = [];
  const add = (sign, what, text) => items.push(el('li', {class: 'd-' + sign},
    el('span', {class: 'sign', 'aria-hidden': 'true'}, sign === 'add' ? '+' : sign === 'del' ? '−' : '~'),
    el('span', {class: 'what'}, what), ' ', text));
  for (const [section, label] of [['routes', 'route'], ['upstreams', 'upstream']]) {
    const c = d[section];
    if (!c) continue;
    for (const n of c.added) add('add', label + ' added', n);
    for (const n of c.removed) add('del', label + ' removed', n);
    for (const n of c.changed) add('chg', label + ' changed', n.name + ': ' + n.keys.join(', '));
  }
  const b = d.backends;
  if (b) {
    for (const e of b.added) add('add', 'backend added', e.addr + ' to ' + e.upstream + ' (weight ' + e.weight + ')');
    for (const e of b.removed) add('del', 'backend removed', e.addr + ' from ' + e.upstream);
    for (const e of b.weights) add('chg', 'weight changed', e.addr + ' in ' + e.upstream + ': ' + e.from + ' → ' + e.to);
  }
  for (const l of d.listeners || []) {
    add('chg', 'listener moved', l.listener + ': ' + (l.from || 'disabled') + ' → ' + (l.to || 'disabled'));
  }
  for (const s of d.settings || []) add('chg', 'setting changed', s);
  if (!items.length) return el('p', {class: 'hint'}, 'no change');
  return el('ul', {class: 'diff'}, ...items);
}

// ---- listeners and registry -----------------------------------------------------------

export function renderListeners(tbody, listeners) {
  syncRows(tbody, listeners, (l) => l.name, (l) => [
    l.name,
    l.addr ? {code: l.addr} : {badge: 'disabled', tone: 'muted'},
    l.detail,
  ], (l) => (l.addr ? '' : 'off'), ['listener', 'address', 'serves']);
}

const REGISTRY_COLUMNS = ['service', 'address', 'TTL', 'TTL left', 'last heartbeat'];

export function renderRegistry(tbody, note, reg) {
  const table = tbody.closest('table');
  let text = '';
  if (!reg.enabled) text = 'The registry is off (server.registry.enabled: false).';
  else if (reg.error) text = 'The registry did not answer: ' + reg.error + '.';
  else if (!reg.services.length) text = 'No services registered.';
  if (note.textContent !== text) note.textContent = text;
  table.hidden = !reg.enabled || reg.services.length === 0;
  if (table.hidden) {
    tbody.replaceChildren();
    return;
  }
  syncRows(tbody, reg.services, (s) => s.id, (s) => [
    {lines: [s.name, 'id ' + s.id]},
    {code: s.address},
    s.ttl,
    s.ttl_left_seconds > 0 ? ttlLeft(s) : {badge: 'expired', tone: 'bad'},
    fmtTime(s.last_heartbeat),
  ], (s) => (s.ttl_left_seconds > 0 ? '' : 'down'), REGISTRY_COLUMNS);
}

function ttlLeft(s) {
  const left = s.ttl_left_seconds;
  const text = left < 60 ? left.toFixed(1) + ' s' : fmtDuration(left);
  const share = s.ttl_seconds > 0 ? left / s.ttl_seconds : 1;
  return share < 0.25 ? {parts: [text, {badge: 'expiring', tone: 'warn'}]} : text;
}
