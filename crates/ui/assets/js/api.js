// Requests to offerd and to the catalog, the tokens that go with them, the error flash.

import { h, sleep } from './dom.js';

/** What the page runs against: config.json and, at offerd, /v1/auth/self. */
export const S = {
  daemon: 'offerd',
  catalogBase: null, // '' at catalogd, '/ui/catalog' at offerd, null: no catalog
  self: null, // offerd's {name, role, paths, authRequired}
  onUnauthorized: null,
};

const TOKEN = 'cairn.token';
const CATALOG_TOKEN = 'cairn.catalogToken';

export function token() { return sessionStorage.getItem(TOKEN) || ''; }
export function ownCatalogToken() { return sessionStorage.getItem(CATALOG_TOKEN) || ''; }
export function catalogToken() { return ownCatalogToken() || token(); }
export function setTokens(t, ct) {
  if (t) sessionStorage.setItem(TOKEN, t); else sessionStorage.removeItem(TOKEN);
  if (ct) sessionStorage.setItem(CATALOG_TOKEN, ct); else sessionStorage.removeItem(CATALOG_TOKEN);
}
export function loggedIn() { return !!(token() || ownCatalogToken()); }

export const isOfferd = () => S.daemon === 'offerd';
export const hasCatalog = () => S.catalogBase != null;

// --- rights -----------------------------------------------------------------------------------

function role() { return S.self ? S.self.role : (isOfferd() ? 'viewer' : 'admin'); }
export function isAdmin() { return role() === 'admin'; }
export function mayCreateApps() { return role() === 'admin' || role() === 'deployer'; }
/** offerd's rule: admin, or a deployer with a path the id starts with. */
export function mayChange(id) {
  if (role() === 'admin') return true;
  if (role() !== 'deployer') return false;
  return (S.self.paths || []).some((p) => id.startsWith(p.endsWith('/') ? p : p + '/'));
}
export const jobPath = (id) => '/' + id.replace(/\./g, '/');

/**
 * Asks the catalog which of `items` ([{Resource, Segment, Access}]) the token may do; false for
 * all when it cannot tell. At offerd, a viewer without a catalog token of its own reads only.
 */
export async function authorize(items, signal) {
  if (!hasCatalog()) return items.map(() => false);
  if (isOfferd() && role() === 'viewer' && !ownCatalogToken()) return items.map(() => false);
  try {
    const r = await catalogFetch('/v1/internal/acl/authorize', { method: 'POST', body: items, signal });
    const out = await r.json();
    return items.map((_, i) => !!(out[i] && out[i].Allow));
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    return items.map(() => false);
  }
}

// --- requests ---------------------------------------------------------------------------------

const REASONS = {
  400: 'Bad Request', 401: 'Unauthorized', 403: 'Forbidden', 404: 'Not Found', 405: 'Method Not Allowed',
  408: 'Request Timeout', 409: 'Conflict', 413: 'Payload Too Large', 422: 'Unprocessable Entity',
  429: 'Too Many Requests', 500: 'Internal Server Error', 502: 'Bad Gateway', 503: 'Service Unavailable',
  504: 'Gateway Timeout',
};

export class ApiError extends Error {
  constructor(status, statusText, detail, body, kind) {
    super(`${status ? status + ' ' : ''}${statusText}${detail ? ': ' + detail : ''}`);
    this.status = status;
    this.detail = detail;
    this.body = body; // parsed JSON when the answer was JSON
    this.kind = kind;
  }
}

async function errorOf(resp, kind, method, url) {
  let text = '';
  try { text = await resp.text(); } catch { /* the body could not be read */ }
  let body = null;
  let detail = text.trim().slice(0, 1000);
  try {
    body = JSON.parse(text);
    if (body && typeof body === 'object') {
      detail = body.message || body.error || body.Message || detail;
      if (Array.isArray(body.details) && body.details.length) {
        detail += ' (' + body.details.map((d) => `${d.path}: ${(d.errors || []).join(', ')}`).join('; ') + ')';
      }
    }
  } catch { /* plain text, as Consul answers */ }
  if (!detail) detail = `${method} ${url}`;
  return new ApiError(resp.status, resp.statusText || REASONS[resp.status] || 'Error', detail, body, kind);
}

async function send(url, kind, { method = 'GET', body, signal, headers, okStatuses } = {}) {
  const hdrs = new Headers(headers || {});
  if (kind === 'offerd') {
    const t = token();
    if (t) hdrs.set('Authorization', 'Bearer ' + t);
  } else {
    const t = catalogToken();
    if (t) hdrs.set('X-Consul-Token', t);
    // At offerd the catalog is reached through offerd's relay, which wants offerd's
    // credentials too (it passes on only the X-Consul-Token).
    if (isOfferd() && token()) hdrs.set('Authorization', 'Bearer ' + token());
  }
  if (body !== undefined && typeof body !== 'string') {
    body = JSON.stringify(body);
    hdrs.set('Content-Type', 'application/json');
  }
  let resp;
  try {
    // credentials 'omit': a 401 must not make the browser ask for a Basic password itself.
    resp = await fetch(url, { method, body, signal, headers: hdrs, cache: 'no-store', credentials: 'omit' });
  } catch (e) {
    if (e.name === 'AbortError' || signal?.aborted) throw abortError();
    throw new ApiError(0, 'Network error', `${method} ${url}: ${e.message}`, null, kind);
  }
  if (!resp.ok && !(okStatuses && okStatuses.includes(resp.status))) {
    const err = await errorOf(resp, kind, method, url);
    if (resp.status === 401 && (kind === 'offerd' || isOfferd()) && S.onUnauthorized) S.onUnauthorized(err);
    throw err;
  }
  return resp;
}

function abortError() {
  const e = new Error('aborted');
  e.name = 'AbortError';
  return e;
}

/** A request to offerd's own API; the Response. */
export function offerdFetch(path, opts) { return send(path, 'offerd', opts); }

/** offerd JSON (null for an empty body). */
export async function offerd(path, opts) {
  const r = await send(path, 'offerd', opts);
  const text = await r.text();
  return text ? JSON.parse(text) : null;
}

export function catalogUrl(path) {
  return (S.catalogBase || '') + path;
}

/** A request to the catalog (Consul's API, at catalogd or through offerd's relay). */
export function catalogFetch(path, opts) { return send(catalogUrl(path), 'catalog', opts); }

export async function catalog(path, opts) {
  const r = await catalogFetch(path, opts);
  const text = await r.text();
  return text ? JSON.parse(text) : null;
}

/**
 * Follows a catalog read with blocking queries (`?index=N&wait=30s`): `onData(json, index)`
 * on the first answer and whenever the index changes; a 404 counts as `null` when
 * `notFound` is set. Errors are flashed (and given to `onError`) and retried with backoff;
 * ends with `signal`.
 */
export async function watch(path, onData, signal, { notFound = false, wait = '30s', onError = null } = {}) {
  let index = 0;
  let first = true;
  let backoff = 2000;
  while (!signal.aborted) {
    const started = Date.now();
    try {
      const sep = path.includes('?') ? '&' : '?';
      const url = index ? `${path}${sep}index=${index}&wait=${wait}` : path;
      const r = await catalogFetch(url, { signal, okStatuses: notFound ? [404] : undefined });
      const got = Number(r.headers.get('X-Consul-Index')) || 0;
      const body = r.status === 404 ? null : JSON.parse((await r.text()) || 'null');
      if (signal.aborted) return;
      if (first || got !== index) await onData(body, got);
      first = false;
      // An index going backwards (a restore, another replica) starts over.
      index = got < index ? 0 : got;
      backoff = 2000;
    } catch (e) {
      if (signal.aborted || e.name === 'AbortError') return;
      flash(e);
      if (onError) onError(e);
      await sleep(backoff, signal);
      backoff = Math.min(backoff * 2, 30000);
      continue;
    }
    // A blocking read answers at once only on a change; without an index it is a poll.
    const gap = index ? 500 : 2000;
    const took = Date.now() - started;
    if (took < gap) await sleep(gap - took, signal);
  }
}

// --- the flash --------------------------------------------------------------------------------

/**
 * Shows an error (or a message) plainly in #flash. `actions`: [{label, run}] buttons shown
 * beside it (for example "Retry with force").
 */
export function flash(err, actions) {
  if (!err || err.name === 'AbortError') return;
  const box = document.getElementById('flash');
  const text = document.getElementById('flash-text');
  const acts = document.getElementById('flash-actions');
  text.textContent = err instanceof Error ? err.message : String(err);
  acts.replaceChildren();
  if (err instanceof ApiError && err.kind === 'catalog' && (err.status === 403 || err.status === 401) && !catalogToken()) {
    acts.append(h('a', { href: '#/login', text: 'Log in with a token that may do this' }));
  }
  for (const a of actions || []) {
    acts.append(h('button', {
      type: 'button', class: a.cls || null, text: a.label,
      onclick: () => { clearFlash(); a.run(); },
    }));
  }
  box.hidden = false;
  box.classList.toggle('info', !(err instanceof Error));
}

export function clearFlash() {
  const box = document.getElementById('flash');
  box.hidden = true;
  document.getElementById('flash-text').textContent = '';
  document.getElementById('flash-actions').replaceChildren();
}
