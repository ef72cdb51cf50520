// #/apps: every app with its counts and status. Rows are built once and patched: an event
// about an app refetches that app alone (events coalesced per app for 50 ms).

import { offerd, mayCreateApps, S, flash } from '../api.js';
import { h, setText, table, Keyed, badge, num } from '../dom.js';
import { appIdsOf, touchesApps } from '../events.js';
import { appHref, appStatus, queueByApp } from '../marathon.js';
import { openEditor } from '../editor.js';

const LIST = '/v2/apps?embed=apps.counts&embed=apps.deployments&embed=apps.lastTaskFailure';
const ONE = '&embed=apps.counts&embed=apps.deployments&embed=apps.lastTaskFailure';
/** More apps than this changed at once: read the whole list instead. */
const BULK = 50;

export async function render(ctx) {
  const filter = h('input', { id: 'apps-filter', type: 'search', placeholder: 'id or status', autocomplete: 'off' });
  const count = h('span', { id: 'apps-count', class: 'muted', role: 'status' });
  const toolbar = h('div', { class: 'toolbar' },
    h('label', { for: 'apps-filter', text: 'Filter' }), filter, count,
    mayCreateApps() ? h('button', { type: 'button', id: 'new-app', class: 'write-action primary', text: 'New app', onclick: newApp }) : null);
  const t = table('apps-table', 'Apps', ['ID', 'Status', 'Running / instances', 'Healthy', 'Staged', 'Unhealthy', 'CPUs', 'Memory (MB)']);
  const empty = h('p', { id: 'apps-empty', class: 'muted', hidden: true, text: 'No apps yet.' });
  ctx.main.append(h('h1', { text: 'Apps' }), toolbar, t.wrap, empty);

  let queue = new Map();
  let needle = '';

  const rows = new Keyed(t.tbody, 'data-app-id', (id) => {
    const r = {
      id: h('th', { scope: 'row', 'data-field': 'id' }, h('a', { href: appHref(id), text: id })),
      status: h('td', { 'data-field': 'status' }),
      running: h('td', { 'data-field': 'running', class: 'num' }),
      healthy: h('td', { 'data-field': 'healthy', class: 'num' }),
      staged: h('td', { 'data-field': 'staged', class: 'num' }),
      unhealthy: h('td', { 'data-field': 'unhealthy', class: 'num' }),
      cpus: h('td', { 'data-field': 'cpus', class: 'num' }),
      mem: h('td', { 'data-field': 'mem', class: 'num' }),
      appId: id, statusKey: '', search: id.toLowerCase(),
    };
    r.tr = h('tr', null, r.id, r.status, r.running, r.healthy, r.staged, r.unhealthy, r.cpus, r.mem);
    return r;
  }, (r, app) => {
    r.app = app;
    const st = appStatus(app, queue.get(app.id));
    if (r.statusKey !== st.key + st.text) {
      r.statusKey = st.key + st.text;
      r.status.replaceChildren(badge(st.key, st.text));
    }
    setText(r.running, `${app.tasksRunning ?? 0}/${app.instances}`);
    setText(r.healthy, app.tasksHealthy ?? 0);
    setText(r.staged, app.tasksStaged ?? 0);
    setText(r.unhealthy, app.tasksUnhealthy ?? 0);
    setText(r.cpus, num(app.cpus));
    setText(r.mem, num(app.mem));
    r.search = `${app.id} ${st.text}`.toLowerCase();
    const hide = !!needle && !r.search.includes(needle);
    if (r.tr.hidden !== hide) r.tr.hidden = hide;
  });

  function counted() {
    const n = rows.rows.size;
    let shown = 0;
    for (const r of rows.rows.values()) if (!r.tr.hidden) shown++;
    setText(count, needle ? `${shown} of ${n} apps` : `${n} apps`);
    empty.hidden = n > 0;
  }

  async function loadQueue() {
    queue = queueByApp(await offerd('/v2/queue', { signal: ctx.signal }));
  }

  async function loadAll() {
    const [list] = await Promise.all([offerd(LIST, { signal: ctx.signal }), loadQueue()]);
    const apps = list.apps || [];
    apps.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    await rows.sync(apps, (a) => a.id, ctx.signal);
    counted();
  }

  function applyFilter() {
    needle = filter.value.trim().toLowerCase();
    for (const r of rows.rows.values()) {
      const hide = !!needle && !r.search.includes(needle);
      if (r.tr.hidden !== hide) r.tr.hidden = hide;
    }
    counted();
  }
  let ft = 0;
  filter.addEventListener('input', () => { clearTimeout(ft); ft = setTimeout(applyFilter, 120); });
  ctx.cleanup(() => clearTimeout(ft));

  function newApp() {
    const base = S.self && S.self.role === 'deployer' && S.self.paths && S.self.paths[0] ? S.self.paths[0].replace(/\/?$/, '/') : '/';
    openEditor(ctx, {
      title: 'New app',
      app: { id: `${base}new-app`, cmd: 'sleep 3600', instances: 1, cpus: 0.1, mem: 32 },
      onSaved: (id) => { location.hash = appHref(id); },
    });
  }

  await loadAll();
  ctx.ready();

  // --- live updates -------------------------------------------------------------------------
  const dirty = new Set();
  let all = false;
  let timer = null;
  let busy = false;
  let queueAt = 0;

  function schedule(ms = 50) {
    if (timer || ctx.signal.aborted) return;
    timer = ctx.later(flush, ms);
  }

  async function flush() {
    timer = null;
    if (busy) { schedule(50); return; }
    busy = true;
    const ids = [...dirty];
    const whole = all || ids.length > BULK;
    dirty.clear();
    all = false;
    try {
      if (whole) {
        await loadAll();
      } else {
        const wantQueue = Date.now() - queueAt >= 1000;
        if (wantQueue) queueAt = Date.now();
        const [apps] = await Promise.all([
          Promise.all(ids.map(async (id) => {
            // The list filtered by id answers [] rather than a 404 for an app just deleted.
            const body = await offerd(`/v2/apps?id=${encodeURIComponent(id)}${ONE}`, { signal: ctx.signal });
            return [id, ((body && body.apps) || []).find((a) => a.id === id) || null];
          })),
          wantQueue ? loadQueue() : null,
        ]);
        for (const [id, app] of apps) rows.patch(id, app);
        if (wantQueue) for (const r of rows.rows.values()) if (!ids.includes(r.appId)) rows.update(r, r.app);
        counted();
      }
    } catch (e) {
      flash(e);
    } finally {
      busy = false;
    }
  }

  ctx.on((ev) => {
    if (!touchesApps(ev.type)) return;
    const ids = appIdsOf(ev);
    if (ev.type === 'group_change_success' || ev.type === 'stream_reconnected' || !ids.length) all = true;
    for (const id of ids) if (!id.startsWith('/metronome/')) dirty.add(id);
    schedule();
  });
  // Launch delays count down and queue reasons change without events: read the queue again
  // while something waits or deploys.
  ctx.every(async () => {
    if (busy) return;
    if (!queue.size && ![...rows.rows.values()].some((r) => r.app && r.app.deployments && r.app.deployments.length)) return;
    try {
      await loadQueue();
      queueAt = Date.now();
      for (const r of rows.rows.values()) rows.update(r, r.app);
      counted();
    } catch (e) { flash(e); }
  }, 5000);
}
