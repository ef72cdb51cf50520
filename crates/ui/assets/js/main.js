// Boot: config.json, who we are, the header, hash routing and each page's lifetime.

import { S, offerd, catalog, token, ownCatalogToken, setTokens, loggedIn, isOfferd, hasCatalog, flash, clearFlash, ApiError } from './api.js';
import { h } from './dom.js';
import { startEvents, stopEvents, onEvent } from './events.js';
import * as login from './pages/login.js';
import * as fleet from './pages/fleet.js';
import * as apps from './pages/apps.js';
import * as app from './pages/app.js';
import * as jobs from './pages/jobs.js';
import * as events from './pages/events.js';
import * as services from './pages/services.js';
import * as service from './pages/service.js';
import * as nodes from './pages/nodes.js';
import * as kv from './pages/kv.js';

const main = document.getElementById('page');

const NAV = [
  { page: 'fleet', label: 'Fleet', href: '#/fleet', offerd: true },
  { page: 'apps', label: 'Apps', href: '#/apps', offerd: true },
  { page: 'jobs', label: 'Jobs', href: '#/jobs', offerd: true },
  { page: 'events', label: 'Events', href: '#/events', offerd: true },
  { page: 'services', label: 'Services', href: '#/services', catalog: true },
  { page: 'nodes', label: 'Nodes', href: '#/nodes', catalog: true },
  { page: 'kv', label: 'KV', href: '#/kv/', catalog: true },
];
const PAGES = { login, fleet, apps, app, jobs, events, services, service, nodes, kv };
const TITLES = { login: 'Log in', fleet: 'Fleet', apps: 'Apps', app: 'App', jobs: 'Jobs', events: 'Events', services: 'Services', service: 'Service', nodes: 'Nodes', kv: 'KV' };
const SECTION = { app: 'apps', service: 'services' };

let current = null; // the running page's context
let wanted = null; // the route to go to after logging in
let lastHash = '';

function defaultRoute() { return isOfferd() ? '#/apps' : '#/services'; }

/** '#/apps/shop/web' → {name: 'app', params: {id: '/shop/web'}} */
function parseRoute(hash) {
  const path = hash.replace(/^#\/?/, '');
  const [head, ...rest] = path.split('/');
  const dec = (segs) => segs.map((s) => { try { return decodeURIComponent(s); } catch { return s; } }).join('/');
  switch (head) {
    case 'login': return { name: 'login', params: {} };
    case 'fleet': case 'jobs': case 'events': case 'nodes': return { name: head, params: {} };
    case 'apps': {
      const id = dec(rest).replace(/^\/+|\/+$/g, '');
      return id ? { name: 'app', params: { id: '/' + id } } : { name: 'apps', params: {} };
    }
    case 'services': {
      const n = dec(rest);
      return n ? { name: 'service', params: { name: n } } : { name: 'services', params: {} };
    }
    case 'kv': return { name: 'kv', params: { path: dec(rest) } };
    default: return null;
  }
}

function buildNav() {
  const ul = document.getElementById('nav');
  ul.replaceChildren();
  for (const n of NAV) {
    if (n.offerd && !isOfferd()) continue;
    if (n.catalog && !hasCatalog()) continue;
    ul.append(h('li', null, h('a', { href: n.href, 'data-nav': n.page, text: n.label })));
  }
}

function markNav(name) {
  const section = SECTION[name] || name;
  for (const a of document.querySelectorAll('#nav a')) {
    if (a.dataset.nav === section) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
}

function renderWho() {
  const who = document.getElementById('whoami');
  if (isOfferd()) who.textContent = S.self ? `${S.self.name} (${S.self.role})` : 'not logged in';
  else who.textContent = S.catalogWho || 'anonymous';
  document.getElementById('nav').hidden = isOfferd() && !S.self;
  document.getElementById('logout').hidden = !loggedIn();
  // offerd without an auth file takes no token: nothing to log in to.
  document.getElementById('login-link').hidden = loggedIn() || (isOfferd() && S.self && !S.self.authRequired);
}

/** At offerd: who the stored token is (null on 401). */
async function loadSelf() {
  try {
    S.self = await offerd('/v1/auth/self');
  } catch (e) {
    S.self = null;
    if (e.status !== 401) {
      // Without an answer the UI cannot tell what may be changed: it reads only.
      S.self = { name: 'unknown', role: 'viewer', paths: [], authRequired: true };
      flash(e);
    }
  }
  return S.self;
}

/** At catalogd: the token's description, for the header. */
async function loadCatalogWho() {
  S.catalogWho = '';
  if (!ownCatalogToken() && !token()) return;
  try {
    const t = await catalog('/v1/acl/token/self');
    S.catalogWho = (t && (t.Description || (t.AccessorID ? 'token ' + t.AccessorID.slice(0, 8) : ''))) || 'token';
  } catch {
    S.catalogWho = 'token';
  }
}

/** After a login or logout: who we are now, then the page. */
async function relogin(next) {
  if (isOfferd()) {
    stopEvents();
    await loadSelf();
    if (S.self) startEvents();
  } else {
    await loadCatalogWho();
  }
  renderWho();
  const go = next || wanted || defaultRoute();
  wanted = null;
  if (location.hash === go) route(); else location.hash = go;
  return S.self;
}

function logout() {
  setTokens('', '');
  S.self = null;
  S.catalogWho = '';
  clearFlash();
  relogin(defaultRoute());
}

function route() {
  let hash = location.hash || '';
  let r = parseRoute(hash);
  if (!r || (!isOfferd() && ['fleet', 'apps', 'app', 'jobs', 'events'].includes(r.name))) {
    location.replace(defaultRoute());
    return;
  }
  if (isOfferd() && !S.self && r.name !== 'login') {
    wanted = hash;
    location.replace('#/login');
    return;
  }
  if (r.name === 'login' && !wanted && lastHash && !lastHash.startsWith('#/login')) wanted = lastHash;
  // A message belongs to the page it came from.
  if (hash !== lastHash) clearFlash();
  lastHash = hash;
  if (current) current.dispose();
  const ctx = makeCtx(r.name, r.params);
  current = ctx;
  main.dataset.page = r.name;
  delete main.dataset.ready;
  main.replaceChildren();
  markNav(r.name);
  document.title = `${TITLES[r.name]} · cairn ${S.daemon}`;
  Promise.resolve()
    .then(() => PAGES[r.name].render(ctx))
    .catch((e) => {
      if (ctx.signal.aborted || e.name === 'AbortError') return;
      flash(e);
      if (!main.querySelector('h1')) main.append(h('h1', { text: TITLES[r.name] }));
      main.append(h('p', { class: 'error', text: `This page could not be loaded: ${e.message}` }));
      ctx.ready();
    });
}

function makeCtx(name, params) {
  const ctrl = new AbortController();
  const cleanups = [];
  return {
    name, params, main,
    signal: ctrl.signal,
    ready() { if (!ctrl.signal.aborted) main.dataset.ready = 'true'; },
    cleanup(fn) { cleanups.push(fn); },
    every(fn, ms) { const t = setInterval(fn, ms); cleanups.push(() => clearInterval(t)); },
    later(fn, ms) { const t = setTimeout(fn, ms); cleanups.push(() => clearTimeout(t)); return t; },
    on(fn) { cleanups.push(onEvent(fn)); },
    wanted: () => wanted,
    dispose() {
      ctrl.abort();
      for (const f of cleanups.splice(0)) { try { f(); } catch (e) { console.error(e); } }
    },
  };
}

async function boot() {
  document.getElementById('flash-dismiss').addEventListener('click', clearFlash);
  document.getElementById('logout').addEventListener('click', logout);
  try {
    const r = await fetch('config.json', { cache: 'no-store', credentials: 'omit' });
    if (!r.ok) throw new ApiError(r.status, r.statusText, 'config.json');
    const cfg = await r.json();
    S.daemon = cfg.daemon === 'catalogd' ? 'catalogd' : 'offerd';
    S.catalogBase = cfg.catalogBase == null ? null : String(cfg.catalogBase);
  } catch (e) {
    flash(new Error(`Cannot read config.json (${e.message}); assuming offerd without a catalog`));
  }
  document.getElementById('daemon-name').textContent = S.daemon;
  document.body.dataset.daemon = S.daemon;
  buildNav();
  S.relogin = relogin;
  S.onUnauthorized = () => {
    // The token went stale (or none was given): log in again.
    if (!S.self) return;
    S.self = null;
    stopEvents();
    renderWho();
    if (!location.hash.startsWith('#/login')) { wanted = location.hash; location.hash = '#/login'; }
  };
  if (isOfferd()) {
    await loadSelf();
    if (S.self) startEvents();
  } else {
    await loadCatalogWho();
  }
  renderWho();
  window.addEventListener('hashchange', () => {
    route();
    // Keyboard and screen reader users start at the new page (unless it focused a field).
    if (!main.contains(document.activeElement)) main.focus({ preventScroll: true });
  });
  if (!location.hash || location.hash === '#' || location.hash === '#/') location.replace(defaultRoute());
  route();
}

boot();
