// gogate console: the explain form. Calls GET /explain (which moves no state), shows where the
// request would go and why, and highlights the chosen route and backend (or each upstream's
// next backend for a random split) in the tables.

import {badge, el} from './view.js';

const $ = (id) => document.getElementById(id);

export function initExplain({api, setHighlight, CallError}) {
  const form = $('explain-form');
  const out = $('explain-result');
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const q = new URLSearchParams();
    q.set('method', $('x-method').value.trim() || 'GET');
    const host = $('x-host').value.trim();
    if (host) q.set('host', host);
    q.set('path', $('x-path').value.trim() || '/');
    for (const line of $('x-headers').value.split('\n')) {
      const t = line.trim();
      if (!t) continue;
      const i = t.indexOf(':');
      if (i <= 0) {
        show(out, el('p', {class: 'error-text'}, 'Header line "' + t + '" is not "Name: value".'));
        return;
      }
      q.append('header', t.slice(0, i).trim() + ':' + t.slice(i + 1).trim());
    }
    const client = $('x-client').value.trim();
    if (client) q.set('client', client);
    $('x-submit').disabled = true;
    try {
      const x = await api('/explain?' + q.toString());
      show(out, result(x));
      setHighlight(highlight(x));
    } catch (e) {
      if (e instanceof CallError && e.status === 401) return;
      show(out, el('p', {class: 'error-text'}, 'Explain failed: ' + e.message));
      setHighlight(null);
    } finally {
      $('x-submit').disabled = false;
    }
  });
  $('x-clear').addEventListener('click', () => {
    out.replaceChildren();
    setHighlight(null);
  });
}

function show(out, node) {
  out.replaceChildren(node);
}

// What to mark in the tables: the route, the backend the request goes to, or (random split,
// backend not known yet) every upstream's next pick.
function highlight(x) {
  const hl = {route: null, isDefault: false, chosen: new Set(), next: new Set()};
  if (x.route) {
    hl.route = x.route.name;
    hl.isDefault = x.route.rank === null;
  }
  const chosen = x.split ? x.split.chosen : null;
  if (x.outcome.backend && chosen !== null && x.split.targets[chosen]) {
    hl.chosen.add(x.split.targets[chosen].upstream + '|' + x.outcome.backend);
  } else {
    for (const u of x.upstreams || []) if (u.next) hl.next.add(u.name + '|' + u.next);
  }
  return hl;
}

function result(x) {
  const o = x.outcome;
  const tone = o.action === 'forward' ? 'ok' : o.action === 'answer' ? 'warn' : 'bad';
  const label = o.action + (o.status ? ' ' + o.status : '');
  const rows = [];
  const row = (k, ...v) => rows.push(el('dt', null, k), el('dd', null, ...v));
  if (x.route) {
    row('route', el('code', null, x.route.name),
      x.route.rank === null ? ' (default upstream: no route matched)' : ' (rank ' + x.route.rank + ')');
    row('why', x.route.specificity.join(' · '));
  } else {
    row('route', 'none');
  }
  if (o.backend) row('backend', el('code', null, o.backend));
  if (x.upstream_path) row('upstream path', el('code', null, x.upstream_path));
  if (x.host_header) row('Host sent', el('code', null, x.host_header));
  if (x.split) {
    const targets = x.split.targets.map((t) => t.upstream + ' ' + Math.round(t.share * 100) + '%').join(', ');
    row('split', x.split.mode + (targets ? ': ' + targets : ''));
  }
  for (const u of x.upstreams || []) {
    const out = u.backends.filter((b) => !b.eligible).map((b) => b.addr + ' (' + b.why_not.join(', ') + ')');
    row('upstream ' + u.name, 'next ', u.next ? el('code', null, u.next) : 'none',
      out.length ? ' · not eligible: ' + out.join('; ') : '');
  }
  if (x.also_matched && x.also_matched.length) {
    row('also matched', el('ul', {class: 'plain'}, ...x.also_matched.map((r) =>
      el('li', null, el('code', null, r.name), ' (rank ' + r.rank + '): ' + r.lost_because))));
  }
  if (x.rate_limit) {
    const r = x.rate_limit;
    row('rate limit', r.scope + ' ' + r.rate + '/s, burst ' + r.burst + ', key ' + r.key +
      (r.tokens === null ? '' : ', tokens ' + r.tokens));
  }
  if (x.auth) row('auth', x.auth.kind + ': ' + x.auth.token);
  if (x.client_ip) row('client IP', x.client_ip);
  const at = new Date().toLocaleTimeString([], {hour12: false});
  return el('div', {class: 'explained'},
    el('p', {class: 'outcome'}, badge(label, tone), ' ', o.reason),
    el('p', {class: 'hint'}, 'as of ' + at + ' (generation ' + x.generation + '); explain again to refresh'),
    el('dl', {class: 'facts'}, ...rows));
}
