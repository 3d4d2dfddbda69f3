// gogate console: DOM helpers (every piece of data goes in as text, never as markup), keyed
// table rows updated in place (buttons stay the same elements between polls), formatting and
// the sparklines (inline SVG).

const SVG = 'http://www.w3.org/2000/svg';

// el('td', {class: 'x', data: {addr: a}, title: t}, 'text', node, ...)
export function el(tag, props, ...children) {
  const node = document.createElement(tag);
  setProps(node, props);
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

function setProps(node, props) {
  if (!props) return;
  for (const [k, v] of Object.entries(props)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'class') node.className = v;
    else if (k === 'data') for (const [dk, dv] of Object.entries(v)) node.dataset[dk] = dv;
    else if (k === 'on') for (const [ev, fn] of Object.entries(v)) node.addEventListener(ev, fn);
    else if (k === 'text') node.textContent = v;
    else node.setAttribute(k, v === true ? '' : String(v));
  }
}

export function badge(text, tone) {
  return el('span', {class: 'badge ' + (tone || 'muted')}, text);
}

// A cell spec is a string/number (text), {badge, tone}, {button, action, addr, disabled},
// {lines: [...]}, {code} or {parts: [spec...]}.
function renderCell(spec) {
  if (spec === null || spec === undefined) return [document.createTextNode('–')];
  if (typeof spec !== 'object') return [document.createTextNode(String(spec))];
  if (spec.parts) return spec.parts.flatMap((p) => [...renderCell(p), document.createTextNode(' ')]);
  if ('badge' in spec) return [badge(spec.badge, spec.tone)];
  if ('code' in spec) return [el('code', null, spec.code)];
  if (spec.lines) return spec.lines.map((l) => el('div', {class: 'line'}, l));
  if (spec.button) {
    return [el('button', {
      type: 'button', class: 'small ' + (spec.cls || ''), disabled: !!spec.disabled,
      data: {action: spec.action, addr: spec.addr}, 'aria-label': spec.label || spec.button,
    }, spec.button)];
  }
  return [document.createTextNode(String(spec.text ?? ''))];
}

// Makes `tbody` hold one row per item, keyed by key(item), in order; cells(item) gives the cell
// specs; rowClass(item) the row's class. A cell is rebuilt only when its spec changed.
export function syncRows(tbody, items, key, cells, rowClass, labels) {
  const old = new Map();
  for (const tr of tbody.children) old.set(tr.dataset.key, tr);
  let prev = null;
  for (const item of items) {
    const k = String(key(item));
    let tr = old.get(k);
    if (tr) old.delete(k);
    else tr = el('tr', {data: {key: k}});
    const specs = cells(item);
    while (tr.children.length > specs.length) tr.lastChild.remove();
    specs.forEach((spec, i) => {
      let td = tr.children[i];
      if (!td) {
        td = el('td', labels && labels[i] ? {data: {label: labels[i]}} : null);
        tr.append(td);
      }
      const sig = JSON.stringify(spec);
      if (td.dataset.sig !== sig) {
        td.dataset.sig = sig;
        td.replaceChildren(el('div', {class: 'cell'}, renderCell(spec)));
      }
    });
    const cls = rowClass ? rowClass(item) : '';
    if (tr.className !== cls) tr.className = cls;
    const want = prev ? prev.nextSibling : tbody.firstChild;
    if (want !== tr) tbody.insertBefore(tr, want);
    prev = tr;
  }
  for (const tr of old.values()) tr.remove();
}

// A row spanning the table, for "nothing here" messages.
export function emptyRow(tbody, columns, text) {
  tbody.replaceChildren(el('tr', {class: 'empty', data: {key: '-'}},
    el('td', {colspan: columns}, text)));
}

export function setText(id, text) {
  const node = document.getElementById(id);
  if (node && node.textContent !== text) node.textContent = text;
}

export function fmtRate(v) {
  if (v === null || v === undefined || !Number.isFinite(v)) return '–';
  if (v === 0) return '0';
  if (v < 10) return v.toFixed(2);
  if (v < 1000) return v.toFixed(1);
  return (v / 1000).toFixed(1) + 'k';
}

export function fmtMs(ms) {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return '–';
  if (ms < 1) return (ms * 1000).toFixed(0) + ' µs';
  if (ms < 100) return ms.toFixed(ms < 10 ? 2 : 1) + ' ms';
  if (ms < 10000) return ms.toFixed(0) + ' ms';
  return (ms / 1000).toFixed(1) + ' s';
}

export function fmtDuration(seconds) {
  if (!Number.isFinite(seconds)) return '–';
  const s = Math.max(0, Math.floor(seconds));
  if (s < 60) return s + 's';
  if (s < 3600) return Math.floor(s / 60) + 'm ' + (s % 60) + 's';
  if (s < 86400) return Math.floor(s / 3600) + 'h ' + Math.floor((s % 3600) / 60) + 'm';
  return Math.floor(s / 86400) + 'd ' + Math.floor((s % 86400) / 3600) + 'h';
}

export function fmtTime(rfc3339) {
  if (!rfc3339) return '–';
  const d = new Date(rfc3339);
  if (Number.isNaN(d.getTime())) return String(rfc3339);
  return d.toLocaleTimeString([], {hour12: false});
}

export function fmtDateTime(rfc3339) {
  if (!rfc3339) return '–';
  const d = new Date(rfc3339);
  if (Number.isNaN(d.getTime())) return String(rfc3339);
  return d.toLocaleDateString([], {month: 'short', day: 'numeric'}) + ' ' +
    d.toLocaleTimeString([], {hour12: false});
}

// Draws series [{values: [[t, v|null], ...], cls}] on `svg` (viewBox 240x48) over the window
// [now - span, now] seconds; gaps (null) break the line. Returns the largest value drawn.
export function sparkline(svg, series, now, span) {
  const W = 240, H = 48, PAD = 3;
  let max = 0;
  for (const s of series) for (const [, v] of s.values) if (v !== null && v > max) max = v;
  const top = max > 0 ? max * 1.1 : 1;
  const nodes = [];
  for (const y of [0.25, 0.5, 0.75]) {
    nodes.push(svgEl('line', {x1: 0, x2: W, y1: H * y, y2: H * y, class: 'grid'}));
  }
  for (const s of series) {
    let pts = [];
    const flush = () => {
      if (pts.length === 1) {
        const [x, y] = pts[0].split(',');
        nodes.push(svgEl('circle', {cx: x, cy: y, r: 1.5, class: 'dot ' + s.cls}));
      } else if (pts.length > 1) {
        nodes.push(svgEl('polyline', {points: pts.join(' '), class: 'line ' + s.cls}));
      }
      pts = [];
    };
    for (const [t, v] of s.values) {
      if (v === null) { flush(); continue; }
      const x = W - ((now - t) / span) * W;
      if (x < 0) continue;
      const y = H - PAD - (v / top) * (H - 2 * PAD);
      pts.push(x.toFixed(1) + ',' + y.toFixed(1));
    }
    flush();
  }
  svg.replaceChildren(...nodes);
  return max;
}

function svgEl(tag, attrs) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  return node;
}
