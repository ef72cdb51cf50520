// #/apps/<id>: one app: its definition's essentials, deployment, queue, autoscaling, tasks
// (with logs), versions and their diff, and the actions the caller may take.

import { offerd, mayChange, flash, clearFlash } from '../api.js';
import { h, setText, table, Keyed, badge, num, fmtTime, timeEl } from '../dom.js';
import { appIdsOf, touchesApps } from '../events.js';
import { appUrl, appStatus, queueByApp, queueReason, editable, taskHealth } from '../marathon.js';
import { openEditor } from '../editor.js';
import { createLogView } from '../logs.js';
import { diffLines } from '../diff.js';

const EMBED = '?embed=app.tasks&embed=app.counts&embed=app.deployments&embed=app.lastTaskFailure';
/** Task rows shown at first, and added by "show more": a table of 10,000 rows takes seconds
 * of layout, so the rest wait until asked for (or found with the filter). */
const PAGE = 500;

export async function render(ctx) {
  const id = ctx.params.id;
  const url = appUrl(id);
  const may = mayChange(id);
  const { signal } = ctx;

  let app = null;
  let queue = null;
  let deployments = [];

  // --- skeleton -----------------------------------------------------------------------------
  const statusLine = h('p', { id: 'app-status', class: 'summary' });
  const dd = {};
  const FIELDS = [
    ['instances', 'Instances'], ['running', 'Running'], ['healthy', 'Healthy'], ['staged', 'Staged'],
    ['unhealthy', 'Unhealthy'], ['cpus', 'CPUs'], ['mem', 'Memory (MB)'], ['disk', 'Disk (MB)'],
    ['run', 'Runs'], ['constraints', 'Constraints'], ['labels', 'Labels'], ['version', 'Version'],
    ['last-failure', 'Last task failure'],
  ];
  const summary = h('dl', { id: 'app-summary', class: 'facts' }, FIELDS.map(([f, label]) => {
    dd[f] = h('dd', { 'data-field': f });
    return h('div', { class: f === 'run' || f === 'labels' ? 'wide' : null }, h('dt', { text: label }), dd[f]);
  }));

  const depText = h('p', { id: 'deployment-text' });
  const depProgress = h('progress', { id: 'deployment-progress', max: 1, value: 0, 'aria-labelledby': 'deployment-text' });
  const depSteps = h('ol', { id: 'deployment-steps', class: 'steps' });
  const depActions = h('div', { class: 'buttons' });
  const depSection = h('section', { id: 'app-deployment', hidden: true, 'aria-labelledby': 'app-deployment-title' },
    h('h2', { id: 'app-deployment-title', text: 'Deployment' }), depText, depProgress, depSteps, depActions);

  const queueLine = h('p', { id: 'app-queue', class: 'notice', hidden: true });
  const autoscale = h('section', { id: 'app-autoscale', hidden: true, 'aria-labelledby': 'app-autoscale-title' },
    h('h2', { id: 'app-autoscale-title', text: 'Autoscaling' }));
  const actionStatus = h('p', { id: 'app-action-status', role: 'status', class: 'muted' });

  const scaleInput = h('input', { id: 'app-scale-input', type: 'number', min: 0, step: 1, class: 'write-action narrow' });
  const actions = may ? h('section', { id: 'app-actions', class: 'actions-bar', 'aria-label': 'Actions' },
    h('label', { for: 'app-scale-input', text: 'Instances' }), scaleInput,
    h('button', { type: 'button', id: 'app-scale', class: 'write-action primary', text: 'Scale', onclick: scale }),
    h('button', { type: 'button', id: 'app-restart', class: 'write-action', text: 'Restart', onclick: () => act('Restart', 'POST', `${url}/restart`) }),
    h('button', { type: 'button', id: 'app-suspend', class: 'write-action', text: 'Suspend', onclick: () => act('Suspend', 'PUT', url, { instances: 0 }) }),
    h('button', { type: 'button', id: 'app-edit', class: 'write-action', text: 'Edit definition', onclick: edit }),
    h('button', { type: 'button', id: 'app-delete', class: 'write-action danger', text: 'Delete', onclick: del }))
    : null;

  const tt = table('tasks-table', 'Tasks', ['Task', 'Host', 'Ports', 'State', 'Health', 'Started', 'Version', { label: 'Actions', cls: 'actions' }]);
  const taskCount = h('span', { id: 'tasks-count', class: 'muted', role: 'status' });
  const taskFilter = h('input', { id: 'tasks-filter', type: 'search', autocomplete: 'off', placeholder: 'id, host, state' });
  const more = h('button', { type: 'button', id: 'tasks-more', hidden: true, text: `Show ${PAGE} more tasks` });
  const allLogs = h('button', { type: 'button', id: 'logs-all', text: 'Logs of all tasks', onclick: (ev) => logs.openAll(ev.currentTarget) });
  const logs = createLogView(ctx, { taskIds: () => allTasks.map((t) => t.id) });

  const verA = h('select', { id: 'version-a' });
  const verB = h('select', { id: 'version-b' });
  const diffPre = h('pre', { id: 'version-diff', class: 'diff', tabindex: '0', 'aria-label': 'Differences between the two versions' });
  const versions = h('section', { id: 'app-versions', 'aria-labelledby': 'app-versions-title' },
    h('h2', { id: 'app-versions-title', text: 'Versions' }),
    h('div', { class: 'toolbar' },
      h('label', { for: 'version-a', text: 'From' }), verA,
      h('label', { for: 'version-b', text: 'To' }), verB),
    diffPre);

  ctx.main.append(
    h('p', { class: 'crumbs' }, h('a', { href: '#/apps', text: 'Apps' }), ' / '),
    h('h1', null, 'App ', h('span', { class: 'mono', text: id })),
    statusLine, actions, actionStatus, queueLine, depSection, summary, autoscale,
    h('section', { id: 'app-tasks', 'aria-labelledby': 'app-tasks-title' },
      h('div', { class: 'toolbar' }, h('h2', { id: 'app-tasks-title', text: 'Tasks' }),
        h('label', { for: 'tasks-filter', text: 'Filter' }), taskFilter, taskCount, allLogs),
      tt.wrap, more),
    logs.section,
    versions);

  // --- tasks --------------------------------------------------------------------------------
  const rows = new Keyed(tt.tbody, 'data-task-id', (tid) => {
    const r = {
      id: h('th', { scope: 'row', 'data-field': 'id', class: 'mono', text: tid }),
      host: h('td', { 'data-field': 'host' }),
      ports: h('td', { 'data-field': 'ports' }),
      state: h('td', { 'data-field': 'state' }),
      health: h('td', { 'data-field': 'health' }),
      started: h('td', { 'data-field': 'started' }),
      version: h('td', { 'data-field': 'version' }),
      actions: h('td', { 'data-field': 'actions', class: 'actions' },
        h('button', { type: 'button', class: 'task-logs', text: 'Logs', 'aria-label': `Logs of ${tid}`, onclick: (ev) => logs.open(tid, ev.currentTarget) }),
        may ? h('button', { type: 'button', class: 'task-kill write-action danger', text: 'Kill', 'aria-label': `Kill ${tid}`, onclick: (ev) => kill(tid, ev.currentTarget) }) : null),
      key: '',
    };
    r.tr = h('tr', null, r.id, r.host, r.ports, r.state, r.health, r.started, r.version, r.actions);
    return r;
  }, (r, t) => {
    const health = taskHealth(t);
    const key = `${t.host}|${t.ports}|${t.state}|${health}|${t.startedAt}|${t.version}`;
    if (key === r.key) return;
    r.key = key;
    setText(r.host, t.host);
    setText(r.ports, (t.ports || []).join(', '));
    if (r.state.textContent !== t.state) r.state.replaceChildren(badge(t.state.replace(/^TASK_/, '').toLowerCase(), t.state));
    if (r.health.textContent !== health) r.health.replaceChildren(badge(health));
    if (r.started.textContent !== (t.startedAt || '')) {
      r.started.replaceChildren(t.startedAt ? h('time', { datetime: t.startedAt, title: fmtTime(t.startedAt), text: t.startedAt }) : '');
    }
    setText(r.version, fmtTime(t.version));
    r.version.title = t.version || '';
  });

  // --- rendering ----------------------------------------------------------------------------
  function renderStatus() {
    if (!app) return;
    const st = appStatus(app, queue);
    statusLine.replaceChildren('Status: ', h('span', { 'data-field': 'status' }, badge(st.key, st.text)));
    if (queue && queue.count > 0) {
      queueLine.hidden = false;
      setText(queueLine, `${queue.count} task${queue.count > 1 ? 's' : ''} waiting to launch since ${fmtTime(queue.since)}: ${queueReason(queue)}`);
    } else {
      queueLine.hidden = true;
    }
  }

  function renderApp() {
    setText(dd.instances, app.instances);
    setText(dd.running, `${app.tasksRunning ?? 0}/${app.instances}`);
    setText(dd.healthy, app.tasksHealthy ?? 0);
    setText(dd.staged, app.tasksStaged ?? 0);
    setText(dd.unhealthy, app.tasksUnhealthy ?? 0);
    setText(dd.cpus, num(app.cpus));
    setText(dd.mem, num(app.mem));
    setText(dd.disk, num(app.disk));
    const docker = app.container && app.container.docker && app.container.docker.image;
    setText(dd.run, docker ? `image ${docker}${app.cmd ? ' — ' + app.cmd : ''}` : app.cmd || (app.args || []).join(' ') || '—');
    setText(dd.constraints, (app.constraints || []).map((c) => c.join(':')).join(', ') || '—');
    setText(dd.labels, Object.entries(app.labels || {}).map(([k, v]) => `${k}=${v}`).join(', ') || '—');
    dd.version.replaceChildren(timeEl(app.version));
    const f = app.lastTaskFailure;
    setText(dd['last-failure'], f ? `${f.state || ''} ${fmtTime(f.timestamp)} on ${f.host || '?'}: ${f.message || ''}`.trim() : '—');
    if (may && document.activeElement !== scaleInput && !scaleInput.dataset.dirty) scaleInput.value = app.instances;
    renderStatus();
  }

  function renderDeployment() {
    const d = deployments[0];
    depSection.hidden = !d;
    if (!d) return;
    const total = d.totalSteps || (d.steps || []).length || 1;
    const cur = Math.min(d.currentStep || 0, total);
    depProgress.max = total;
    depProgress.value = cur;
    setText(depText, `Deployment ${d.id} (version ${fmtTime(d.version)}): step ${cur} of ${total}` +
      (deployments.length > 1 ? `; ${deployments.length - 1} more deployment(s) of this app` : ''));
    depSteps.replaceChildren(...(d.steps || []).map((s, i) => h('li', { class: i + 1 === cur ? 'current' : null, 'aria-current': i + 1 === cur ? 'step' : null },
      (s.actions || []).map((a) => `${a.action} ${a.app}`).join(', '))));
    depActions.replaceChildren(may ? h('button', {
      type: 'button', id: 'deployment-cancel', class: 'write-action', text: 'Roll back this deployment',
      onclick: () => act('Roll back', 'DELETE', `/v2/deployments/${encodeURIComponent(d.id)}`),
    }) : '');
  }

  function renderAutoscale(s) {
    autoscale.hidden = !s;
    if (!s) return;
    const items = [
      ['Metric', `${s.metric}: target ${num(s.target)} per instance, ${s.min}–${s.max} instances`],
      ['Last reading', s.value == null ? 'none could be read' : num(s.value)],
      ['Decision', `${s.decision}: ${s.reason} (${fmtTime(s.updatedAt)})`],
      ['Last scale', s.lastScale ? `${s.lastScale.from} → ${s.lastScale.to} at ${fmtTime(s.lastScale.at)}: ${s.lastScale.reason}` : 'none yet'],
    ];
    autoscale.replaceChildren(autoscale.firstChild, h('dl', { class: 'facts' }, items.map(([k, v]) => h('div', null, h('dt', { text: k }), h('dd', { text: v })))));
  }

  // --- versions -----------------------------------------------------------------------------
  const cache = new Map();
  let versionList = [];
  let picked = false;
  async function loadVersions() {
    const body = await offerd(`${url}/versions`, { signal });
    const list = (body && body.versions) || [];
    if (list.join() === versionList.join()) return;
    versionList = list;
    const keepA = verA.value;
    const keepB = verB.value;
    for (const sel of [verA, verB]) {
      sel.replaceChildren(...list.map((v, i) => h('option', { value: v, text: `${fmtTime(v)}${i === 0 ? ' (current)' : ''}` })));
    }
    // The operator's pick stays while it exists; otherwise the previous version against the current.
    verA.value = picked && list.includes(keepA) ? keepA : list[Math.min(1, list.length - 1)] || '';
    verB.value = picked && list.includes(keepB) ? keepB : list[0] || '';
    await showDiff();
  }
  async function version(v) {
    if (!cache.has(v)) cache.set(v, offerd(`${url}/versions/${encodeURIComponent(v)}`, { signal }).catch((e) => { cache.delete(v); throw e; }));
    return cache.get(v);
  }
  async function showDiff() {
    const a = verA.value;
    const b = verB.value;
    if (!a || !b) { diffPre.textContent = 'No versions.'; return; }
    const [va, vb] = await Promise.all([version(a), version(b)]);
    const lines = diffLines(pretty(va).split('\n'), pretty(vb).split('\n'));
    const changed = lines.some((l) => l.op !== ' ');
    diffPre.replaceChildren(...lines.map((l) => (l.op === ' '
      ? `  ${l.line}\n`
      : h('span', { class: l.op === '+' ? 'add' : 'del', text: `${l.op} ${l.line}\n` }))));
    diffPre.dataset.changed = changed ? 'true' : 'false';
  }
  const pretty = (v) => JSON.stringify(v, null, 2);
  const onPick = () => { picked = true; showDiff().catch(flash); };
  verA.addEventListener('change', onPick);
  verB.addEventListener('change', onPick);

  // --- loading ------------------------------------------------------------------------------
  async function loadApp() {
    try {
      app = (await offerd(url + EMBED, { signal })).app;
    } catch (e) {
      if (e.status === 404) { app = null; gone(e); missing = e; return false; }
      throw e;
    }
    renderApp();
    allTasks = (app.tasks || []).slice().sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    await showTasks();
    return true;
  }

  let allTasks = [];
  let shown = PAGE;
  let needle = '';
  async function showTasks() {
    const match = needle
      ? allTasks.filter((t) => `${t.id} ${t.host} ${t.state} ${taskHealth(t)}`.toLowerCase().includes(needle))
      : allTasks;
    const slice = match.length > shown ? match.slice(0, shown) : match;
    more.hidden = match.length <= shown;
    setText(taskCount, match.length === allTasks.length
      ? (slice.length < match.length ? `showing ${slice.length} of ${allTasks.length} tasks` : `${allTasks.length} tasks`)
      : `${match.length} of ${allTasks.length} tasks match${slice.length < match.length ? `, showing ${slice.length}` : ''}`);
    await rows.sync(slice, (t) => t.id, signal);
  }
  more.addEventListener('click', () => { shown += PAGE; showTasks().catch(flash); });
  let tf = 0;
  taskFilter.addEventListener('input', () => {
    clearTimeout(tf);
    tf = setTimeout(() => { needle = taskFilter.value.trim().toLowerCase(); shown = PAGE; showTasks().catch(flash); }, 150);
  });
  ctx.cleanup(() => clearTimeout(tf));
  async function loadDeployments() {
    const all = (await offerd('/v2/deployments', { signal })) || [];
    deployments = all.filter((d) => (d.affectedApps || []).includes(id));
    renderDeployment();
  }
  async function loadQueue() {
    queue = queueByApp(await offerd('/v2/queue', { signal })).get(id) || null;
    renderStatus();
  }
  async function loadAutoscale() {
    try {
      // All apps' (only those with a policy): ?app= would answer 404 for the others.
      const body = await offerd('/v1/autoscale/status', { signal });
      renderAutoscale(((body && body.apps) || []).find((a) => a.appId === id));
    } catch (e) {
      if (e.status === 404) renderAutoscale(null); else throw e;
    }
  }

  let deleted = false;
  let missing = null;
  function gone(e) {
    deleted = true;
    setText(statusLine, `App ${id} does not exist${e ? ' (' + e.message + ')' : ''}.`);
    for (const el of [actions, summary, depSection, queueLine, autoscale, versions]) if (el) el.hidden = true;
    allTasks = [];
    showTasks();
  }

  const exists = await loadApp();
  if (!exists) flash(missing);
  if (exists) {
    await Promise.all([
      loadDeployments(), loadQueue(),
      loadVersions().catch(flash),
      loadAutoscale().catch(flash),
    ]);
  }
  ctx.ready();

  // --- actions ------------------------------------------------------------------------------
  async function act(label, method, path, body, force = false) {
    const target = force ? `${path}${path.includes('?') ? '&' : '?'}force=true` : path;
    setText(actionStatus, `${label}…`);
    try {
      const r = await offerd(target, { method, body, signal });
      setText(actionStatus, r && r.deploymentId ? `${label}: deployment ${r.deploymentId} started.` : `${label}: done.`);
      clearFlash();
      refresh(true);
      return r;
    } catch (e) {
      if (e.name === 'AbortError') return null;
      setText(actionStatus, `${label} failed: ${e.message}`);
      if (e.status === 409 && e.body && e.body.deployments) {
        flash(e, [{ label: `${label} with force`, cls: 'write-action danger', run: () => act(label, method, path, body, true) }]);
      } else {
        flash(e);
      }
      return null;
    }
  }
  scaleInput.addEventListener('input', () => { scaleInput.dataset.dirty = '1'; });
  scaleInput.addEventListener('keydown', (ev) => { if (ev.key === 'Enter') scale(); });
  async function scale() {
    const n = Number(scaleInput.value);
    if (scaleInput.value.trim() === '' || !Number.isInteger(n) || n < 0) {
      flash(new Error(`Instances must be a whole number ≥ 0 (not ${JSON.stringify(scaleInput.value)}); nothing was sent.`));
      return;
    }
    const r = await act(`Scale to ${n}`, 'PUT', url, { instances: n });
    if (r) delete scaleInput.dataset.dirty;
  }
  async function del() {
    if (!confirm(`Delete app ${id} and kill its tasks?`)) return;
    const r = await act('Delete', 'DELETE', url);
    if (r) location.hash = '#/apps';
  }
  function edit() {
    if (!app) return;
    openEditor(ctx, {
      title: `Edit ${id}`, app: editable(app), id,
      onSaved: (_, r) => {
        setText(actionStatus, r && r.deploymentId ? `Saved: deployment ${r.deploymentId} started.` : 'Saved.');
        refresh(true);
      },
    });
  }
  async function kill(tid, button) {
    button.disabled = true;
    try {
      await offerd(`${url}/tasks/${encodeURIComponent(tid)}`, { method: 'DELETE', signal });
      setText(actionStatus, `Kill of ${tid} requested.`);
      refresh(false);
    } catch (e) {
      setText(actionStatus, `Kill of ${tid} failed: ${e.message}`);
      flash(e);
    } finally {
      button.disabled = false;
    }
  }

  // --- live updates -------------------------------------------------------------------------
  let timer = null;
  let busy = false;
  let again = false;
  let wantAutoscale = false;
  let lastVersion = app && app.version;
  let lastLoad = 0;

  function refresh(now) {
    if (ctx.signal.aborted) return;
    if (busy) { again = true; return; }
    if (timer) return;
    const big = app && app.tasks && app.tasks.length > 2000;
    const wait = now ? 0 : Math.max(50, big ? 1000 - (Date.now() - lastLoad) : 50);
    timer = ctx.later(run, wait);
  }
  async function run() {
    timer = null;
    busy = true;
    try {
      lastLoad = Date.now();
      const ok = await loadApp();
      if (ok) {
        if (deleted) { deleted = false; for (const el of [actions, summary, versions]) if (el) el.hidden = false; }
        const jobs = [loadDeployments(), loadQueue()];
        if (app.version !== lastVersion) { lastVersion = app.version; jobs.push(loadVersions()); }
        if (wantAutoscale) { wantAutoscale = false; jobs.push(loadAutoscale()); }
        await Promise.all(jobs);
      }
    } catch (e) {
      flash(e);
    } finally {
      busy = false;
      if (again) { again = false; refresh(false); }
    }
  }
  ctx.on((ev) => {
    if (!touchesApps(ev.type)) return;
    const mine = appIdsOf(ev).includes(id);
    if (!mine && ev.type !== 'stream_reconnected' && ev.type !== 'group_change_success') return;
    if (ev.type === 'scaling_event' || ev.type === 'stream_reconnected') wantAutoscale = true;
    refresh(false);
  });
  // Queue delays count down without events; autoscaling decisions come every round.
  ctx.every(() => {
    if (queue || !autoscale.hidden || deployments.length) { wantAutoscale = !autoscale.hidden; refresh(false); }
  }, 5000);
}
