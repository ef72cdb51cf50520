// #/jobs: Metronome's jobs (GET /v1/jobs), their schedules, last results and active runs; a
// run started now for those the caller may change.

import { offerd, mayChange, jobPath, flash } from '../api.js';
import { h, setText, table, Keyed, badge, fmtTime } from '../dom.js';

const LIST = '/v1/jobs?embed=activeRuns&embed=history&embed=schedules';

export async function render(ctx) {
  const status = h('p', { id: 'jobs-status', role: 'status', class: 'muted' });
  const t = table('jobs-table', 'Jobs', ['Job', 'Command', 'Schedule', 'Next run', 'Last success', 'Last failure', 'Active runs', { label: 'Actions', cls: 'actions' }]);
  const empty = h('p', { class: 'muted', hidden: true, text: 'No jobs yet.' });
  ctx.main.append(h('h1', { text: 'Jobs' }), status, t.wrap, empty);

  const rows = new Keyed(t.tbody, 'data-job-id', (id) => {
    const r = {
      id: h('th', { scope: 'row', 'data-field': 'id' }),
      cmd: h('td', { 'data-field': 'cmd', class: 'mono clip' }),
      schedule: h('td', { 'data-field': 'schedule' }),
      next: h('td', { 'data-field': 'next-run' }),
      success: h('td', { 'data-field': 'last-success' }),
      failure: h('td', { 'data-field': 'last-failure' }),
      active: h('td', { 'data-field': 'active-runs' }),
      actions: h('td', { 'data-field': 'actions', class: 'actions' },
        mayChange(jobPath(id)) ? h('button', {
          type: 'button', class: 'job-run write-action', text: 'Run now', 'aria-label': `Run ${id} now`,
          onclick: (ev) => runNow(id, ev.currentTarget),
        }) : null),
      key: '',
    };
    r.tr = h('tr', null, r.id, r.cmd, r.schedule, r.next, r.success, r.failure, r.active, r.actions);
    return r;
  }, (r, j) => {
    const key = JSON.stringify(j);
    if (key === r.key) return;
    r.key = key;
    r.id.replaceChildren(h('span', { class: 'mono', text: j.id }), j.description ? h('div', { class: 'muted small', text: j.description }) : '');
    const run = j.run || {};
    setText(r.cmd, run.cmd || (run.docker && run.docker.image ? `image ${run.docker.image}` : '') || (run.args || []).join(' '));
    r.cmd.title = r.cmd.textContent;
    const sched = (j.schedules || [])[0];
    const deps = (j.dependencies || []).map((d) => d.id);
    setText(r.schedule, sched
      ? `${sched.cron} (${sched.timezone || 'UTC'})${sched.enabled === false ? ', disabled' : ''}`
      : deps.length ? `after ${deps.join(', ')}` : 'on demand');
    setText(r.next, sched && sched.enabled !== false && sched.nextRunAt ? fmtTime(sched.nextRunAt) : '—');
    const hist = j.history || {};
    setText(r.success, hist.lastSuccessAt ? `${fmtTime(hist.lastSuccessAt)} (${hist.successCount} ok)` : `never (${hist.successCount || 0} ok)`);
    setText(r.failure, hist.lastFailureAt ? `${fmtTime(hist.lastFailureAt)} (${hist.failureCount} failed)` : `never (${hist.failureCount || 0} failed)`);
    const runs = j.activeRuns || [];
    r.active.replaceChildren(runs.length
      ? h('ul', { class: 'plain' }, runs.map((x) => h('li', null, badge(String(x.status).toLowerCase(), x.status), ' ', h('span', { class: 'mono small', text: x.id }))))
      : h('span', { class: 'muted', text: 'none' }));
  });

  async function load() {
    const jobs = (await offerd(LIST, { signal: ctx.signal })) || [];
    jobs.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    await rows.sync(jobs, (j) => j.id, ctx.signal);
    empty.hidden = jobs.length > 0;
  }

  async function runNow(id, button) {
    button.disabled = true;
    try {
      const r = await offerd(`/v1/jobs/${encodeURIComponent(id)}/runs`, { method: 'POST', signal: ctx.signal });
      setText(status, `Run ${r && r.id ? r.id + ' ' : ''}of ${id} started.`);
      refresh();
    } catch (e) {
      setText(status, `Run of ${id} failed: ${e.message}`);
      flash(e);
    } finally {
      button.disabled = false;
    }
  }

  await load();
  ctx.ready();

  let timer = null;
  let last = 0;
  function refresh() {
    if (timer || ctx.signal.aborted) return;
    timer = ctx.later(async () => {
      timer = null;
      last = Date.now();
      try { await load(); } catch (e) { flash(e); }
    }, Math.max(50, 1000 - (Date.now() - last)));
  }
  ctx.on((ev) => {
    if (ev.type.startsWith('job_') || ev.type === 'stream_reconnected') refresh();
    else if (ev.type === 'status_update_event' && ev.data && String(ev.data.appId || '').startsWith('/metronome/')) refresh();
  });
  // Next run times move on without events.
  ctx.every(refresh, 10000);
}
