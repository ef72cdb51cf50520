// DOM helpers: elements are built with createElement and textContent only (never innerHTML),
// so nothing an API answers can become markup.

const PROPS = new Set(['value', 'checked', 'disabled', 'hidden', 'selected', 'htmlFor', 'open', 'min', 'max', 'low', 'high', 'optimum']);

/** h('td', {class: 'x', 'data-field': 'state', onclick: fn}, 'text', child, [more]) */
export function h(tag, props, ...kids) {
  const el = document.createElement(tag);
  if (props) {
    for (const k in props) {
      const v = props[k];
      if (v == null || v === false) continue;
      if (k === 'class') el.className = v;
      else if (k === 'text') el.textContent = v;
      else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
      else if (PROPS.has(k)) el[k] = v;
      else el.setAttribute(k, v === true ? '' : String(v));
    }
  }
  add(el, kids);
  return el;
}

function add(el, kids) {
  for (const k of kids) {
    if (k == null || k === false) continue;
    if (Array.isArray(k)) add(el, k);
    else el.append(k instanceof Node ? k : String(k));
  }
}

/** Sets an element's text only when it differs (no needless layout). */
export function setText(el, text) {
  text = text == null ? '' : String(text);
  if (el.textContent !== text) el.textContent = text;
}

export function setAttr(el, name, value) {
  if (value == null) { if (el.hasAttribute(name)) el.removeAttribute(name); }
  else if (el.getAttribute(name) !== String(value)) el.setAttribute(name, value);
}

/** A scrollable table: {wrap, table, tbody}. cols: [label | {label, cls}] */
export function table(id, caption, cols) {
  const tbody = h('tbody');
  const t = h('table', { id },
    caption ? h('caption', { class: 'visually-hidden', text: caption }) : null,
    h('thead', null, h('tr', null, cols.map((c) => typeof c === 'string'
      ? h('th', { scope: 'col', text: c })
      : h('th', { scope: 'col', class: c.cls, text: c.label })))),
    tbody);
  const wrap = h('div', { class: 'table-wrap', tabindex: '0', role: 'region', 'aria-label': caption || id }, t);
  return { wrap, table: t, tbody };
}

export const frame = () => new Promise((r) => requestAnimationFrame(() => r()));
export const tick = () => new Promise((r) => setTimeout(r, 0));

export function sleep(ms, signal) {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done() { clearTimeout(t); signal?.removeEventListener('abort', done); resolve(); }
    signal?.addEventListener('abort', done);
  });
}

/**
 * Table rows kept by key: build a row once, update only its changed cells afterwards, move
 * rows only when the order changes, drop rows whose key went away. Large sets are done in
 * slices with a yield between them, so 10,000 rows never freeze the page.
 */
export class Keyed {
  constructor(tbody, attr, build, update) {
    this.tbody = tbody;
    this.attr = attr;
    this.build = build; // (key, item) => row {tr, ...}
    this.update = update; // (row, item) => void
    this.rows = new Map();
    this.gen = 0;
  }

  /** Makes the rows exactly `items`, in order. Resolves false when overtaken by a newer sync. */
  async sync(items, key, signal) {
    const gen = ++this.gen;
    const seen = new Set();
    let prev = null;
    let t0 = performance.now();
    for (let i = 0; i < items.length; i++) {
      const it = items[i];
      const k = key(it);
      if (seen.has(k)) continue;
      seen.add(k);
      let row = this.rows.get(k);
      if (!row) {
        row = this.build(k, it);
        row.tr.setAttribute(this.attr, k);
        this.rows.set(k, row);
      }
      this.update(row, it);
      const want = prev ? prev.nextSibling : this.tbody.firstChild;
      if (want !== row.tr) this.tbody.insertBefore(row.tr, want);
      prev = row.tr;
      if ((i & 127) === 127 && performance.now() - t0 > 30) {
        await tick();
        if (signal?.aborted || gen !== this.gen) return false;
        t0 = performance.now();
        // A patch may have moved rows meanwhile: continue after this row.
      }
    }
    for (const [k, row] of this.rows) {
      if (!seen.has(k)) { row.tr.remove(); this.rows.delete(k); }
    }
    return true;
  }

  /** Updates one row (creating it at its sorted place when new); `item` null removes it. */
  patch(k, item, compare = (a, b) => (a < b ? -1 : a > b ? 1 : 0)) {
    let row = this.rows.get(k);
    if (item == null) {
      if (row) { row.tr.remove(); this.rows.delete(k); }
      return null;
    }
    if (!row) {
      row = this.build(k, item);
      row.tr.setAttribute(this.attr, k);
      this.rows.set(k, row);
      let before = null;
      for (const tr of this.tbody.children) {
        if (compare(tr.getAttribute(this.attr), k) > 0) { before = tr; break; }
      }
      this.tbody.insertBefore(row.tr, before);
    }
    this.update(row, item);
    return row;
  }
}

// --- formatting -------------------------------------------------------------------------------

const pad = (n) => String(n).padStart(2, '0');

/** A time from the APIs (RFC 3339, or Metronome's +0000) as local `YYYY-MM-DD HH:MM:SS`. */
export function fmtTime(s) {
  if (!s) return '';
  const d = toDate(s);
  if (!d) return String(s);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

export function toDate(s) {
  if (!s) return null;
  const d = new Date(String(s).replace(/([+-]\d\d)(\d\d)$/, '$1:$2'));
  return Number.isNaN(d.getTime()) ? null : d;
}

export function timeEl(s) {
  return s ? h('time', { datetime: s, title: s, text: fmtTime(s) }) : h('span', { class: 'muted', text: '—' });
}

export function ago(ms) {
  if (ms == null) return '';
  const s = Math.round(ms / 1000);
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.floor(s / 60)}m ago`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ago`;
  return `${Math.floor(s / 86400)}d ago`;
}

export function num(n, digits = 2) {
  if (n == null || Number.isNaN(n)) return '';
  const r = Math.round(n * 10 ** digits) / 10 ** digits;
  return String(r);
}

/** Orders check statuses: critical (and maintenance) first. */
export const STATUS_ORDER = { critical: 0, maintenance: 0, warning: 1, passing: 2 };

/** The worst of a list of Consul statuses (none: passing). */
export function worst(statuses) {
  let w = 'passing';
  for (const s of statuses) {
    if (s === 'critical' || s === 'maintenance') return 'critical';
    if (s === 'warning') w = 'warning';
  }
  return w;
}

/** A status badge: the word itself, coloured by class (never colour alone). */
export function badge(status, text) {
  return h('span', { class: `badge st-${String(status).toLowerCase().replace(/[^a-z_-]/g, '')}`, text: text ?? status });
}

export function encPath(p) {
  return String(p).split('/').map(encodeURIComponent).join('/');
}
