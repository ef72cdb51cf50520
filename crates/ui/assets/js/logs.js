// The log viewer (#log-view): one task's stdout or stderr followed through offerd
// (GET /v1/tasks/ID/logs?stream=&follow=true, read as it comes), or every task of the app
// (at most 10), each line prefixed with its task id. Closing it aborts the reads.

import { offerdFetch, flash } from './api.js';
import { h, sleep } from './dom.js';

/** Text kept in the viewer (the oldest is dropped). */
const CAP = 200 * 1024;
const MAX_TASKS = 10;
/** How often each task's log is read again in the all-tasks view. */
const POLL_MS = 2000;

export function createLogView(ctx, { taskIds }) {
  const title = h('h2', { id: 'log-title', text: 'Logs' });
  const stream = h('select', { id: 'log-stream' },
    h('option', { value: 'stdout', text: 'stdout' }), h('option', { value: 'stderr', text: 'stderr' }));
  const all = h('input', { id: 'log-all', type: 'checkbox' });
  const state = h('span', { id: 'log-state', class: 'muted', role: 'status' });
  const closeBtn = h('button', { type: 'button', id: 'log-close', text: 'Close logs' });
  const pre = h('pre', { id: 'log-text', class: 'log', tabindex: '0', 'aria-labelledby': 'log-title' });
  const section = h('section', { id: 'log-view', hidden: true, 'aria-labelledby': 'log-title' },
    h('div', { class: 'toolbar' }, title,
      h('label', { for: 'log-stream', text: 'Stream' }), stream,
      h('label', { class: 'check' }, all, ` All tasks of the app (up to ${MAX_TASKS})`),
      state, closeBtn),
    pre);

  let taskId = null;
  let ctrl = null;
  let opener = null;
  let total = 0;
  let pending = '';
  let rafQueued = false;

  function flushText() {
    rafQueued = false;
    if (!pending) return;
    const atBottom = pre.scrollHeight - pre.scrollTop - pre.clientHeight < 40;
    pre.append(pending);
    total += pending.length;
    pending = '';
    while (total > CAP && pre.firstChild) {
      const n = pre.firstChild;
      const over = total - CAP;
      if (n.length <= over) { total -= n.length; n.remove(); } else { n.deleteData(0, over); total -= over; }
    }
    if (pre.childNodes.length > 500) pre.normalize();
    if (atBottom) pre.scrollTop = pre.scrollHeight;
  }

  function append(s) {
    if (!s) return;
    pending += s;
    if (pending.length > CAP) pending = pending.slice(pending.length - CAP);
    if (!rafQueued) { rafQueued = true; requestAnimationFrame(flushText); }
  }

  const logUrl = (id, q) => `/v1/tasks/${encodeURIComponent(id)}/logs?stream=${stream.value}${q}`;

  async function follow(id, signal) {
    state.textContent = 'connecting…';
    const r = await offerdFetch(logUrl(id, '&follow=true'), { signal });
    state.textContent = 'following';
    const reader = r.body.getReader();
    const dec = new TextDecoder();
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      append(dec.decode(value, { stream: true }));
    }
    append(dec.decode());
    state.textContent = 'the log ended (the task is over)';
  }

  /**
   * Every task of the app: a browser keeps at most 6 connections to a host, so rather than a
   * held stream per task (which would starve the page's other requests), each task's log is
   * read from where the last read stopped (X-Taskrun-Offset), every 2 s.
   */
  async function pollAll(ids, signal) {
    const tasks = ids.slice(0, MAX_TASKS).map((id) => ({ id, offset: null, rest: '', dec: new TextDecoder(), gone: false }));
    if (!tasks.length) { state.textContent = 'no tasks'; return; }
    state.textContent = `following ${tasks.length} task${tasks.length > 1 ? 's' : ''}${ids.length > MAX_TASKS ? ` of ${ids.length}` : ''}`;
    while (!signal.aborted) {
      for (const t of tasks) {
        if (signal.aborted) return;
        if (t.gone) continue;
        try {
          const r = await offerdFetch(logUrl(t.id, t.offset != null ? `&offset=${t.offset}` : ''), { signal });
          const reader = r.body.getReader();
          let got = 0;
          let text = '';
          for (;;) {
            const { value, done } = await reader.read();
            if (done) break;
            got += value.length;
            text += t.dec.decode(value, { stream: true });
          }
          const next = Number(r.headers.get('X-Taskrun-Offset'));
          t.offset = Number.isFinite(next) && r.headers.has('X-Taskrun-Offset') ? next : (t.offset || 0) + got;
          const lines = (t.rest + text).split('\n');
          t.rest = lines.pop();
          if (lines.length) append(lines.map((l) => `[${t.id}] ${l}\n`).join(''));
        } catch (e) {
          if (signal.aborted || e.name === 'AbortError') return;
          if (e.status === 404) { t.gone = true; append(`[${t.id}] (${e.message})\n`); } else flash(e);
        }
      }
      await sleep(POLL_MS, signal);
    }
  }

  function start() {
    ctrl?.abort();
    ctrl = new AbortController();
    const signal = ctrl.signal;
    pre.replaceChildren();
    total = 0;
    pending = '';
    const run = all.checked ? pollAll(taskIds(), signal) : follow(taskId, signal);
    title.textContent = all.checked ? `Logs of every task (${stream.value})` : `Logs of ${taskId} (${stream.value})`;
    run.catch((e) => {
      if (signal.aborted || e.name === 'AbortError') return;
      state.textContent = `failed: ${e.message}`;
      flash(e);
    });
  }

  function close() {
    ctrl?.abort();
    ctrl = null;
    section.hidden = true;
    if (opener && opener.isConnected) opener.focus();
  }

  stream.addEventListener('change', start);
  all.addEventListener('change', start);
  closeBtn.addEventListener('click', close);
  ctx.cleanup(() => ctrl?.abort());

  return {
    section,
    open(id, from) {
      taskId = id;
      opener = from || null;
      all.checked = false;
      section.hidden = false;
      start();
      section.scrollIntoView({ block: 'nearest' });
      stream.focus();
    },
    openAll(from) {
      opener = from || null;
      all.checked = true;
      section.hidden = false;
      start();
      section.scrollIntoView({ block: 'nearest' });
      stream.focus();
    },
    close,
  };
}
