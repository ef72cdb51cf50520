// offerd's /v2/events, read once for the whole page with fetch (EventSource cannot send the
// Authorization header) and handed to every subscriber. Reconnects with backoff; after a
// reconnection subscribers get a `stream_reconnected` event (they may have missed changes).

import { offerdFetch, flash } from './api.js';
import { sleep } from './dom.js';

export const MAX_EVENTS = 500;

const subs = new Set();
const recent = []; // oldest first, at most MAX_EVENTS
const types = new Set();
let running = false;
let gen = 0; // each start's loop ends when a newer start (or a stop) comes
let ctrl = null;
let statusEl = null;

export function onEvent(fn) {
  subs.add(fn);
  return () => subs.delete(fn);
}

export function recentEvents() { return recent; }
export function seenTypes() { return types; }

function setStatus(text, cls) {
  statusEl ??= document.getElementById('live-status');
  if (!statusEl) return;
  statusEl.hidden = false;
  statusEl.textContent = text;
  statusEl.className = 'live ' + cls;
}

function dispatch(type, raw) {
  let data = null;
  try { data = JSON.parse(raw); } catch { data = raw; }
  const ev = { type, data, raw, at: Date.now() };
  if (type !== 'stream_reconnected') {
    recent.push(ev);
    if (recent.length > MAX_EVENTS) recent.splice(0, recent.length - MAX_EVENTS);
    types.add(type);
  }
  for (const fn of [...subs]) {
    try { fn(ev); } catch (e) { console.error('event subscriber failed', e); }
  }
}

export function startEvents() {
  if (running) return;
  running = true;
  loop(++gen);
}

export function stopEvents() {
  running = false;
  gen++;
  ctrl?.abort();
  if (statusEl) statusEl.hidden = true;
}

async function loop(mine) {
  const live = () => running && mine === gen;
  let backoff = 1000;
  let attachedBefore = false;
  while (live()) {
    ctrl = new AbortController();
    try {
      const resp = await offerdFetch('/v2/events', { signal: ctrl.signal, headers: { Accept: 'text/event-stream' } });
      setStatus('live', 'on');
      const reader = resp.body.getReader();
      const dec = new TextDecoder();
      let buf = '';
      let type = '';
      let data = [];
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += dec.decode(value, { stream: true });
        const lines = buf.split('\n');
        buf = lines.pop();
        for (let line of lines) {
          if (line.endsWith('\r')) line = line.slice(0, -1);
          if (line === '') {
            if (data.length) {
              const t = type || 'message';
              dispatch(t, data.join('\n'));
              if (t === 'event_stream_attached') {
                backoff = 1000;
                if (attachedBefore) dispatch('stream_reconnected', '{}');
                attachedBefore = true;
              }
            }
            type = '';
            data = [];
          } else if (line[0] !== ':') {
            const c = line.indexOf(':');
            const field = c < 0 ? line : line.slice(0, c);
            let v = c < 0 ? '' : line.slice(c + 1);
            if (v[0] === ' ') v = v.slice(1);
            if (field === 'event') type = v;
            else if (field === 'data') data.push(v);
          }
        }
      }
    } catch (e) {
      if (!live()) return;
      if (e.status === 401) { running = false; setStatus('not live', 'off'); return; }
      // A refusal or a server error is shown; a dropped connection (a restart) is not.
      if (e.status) flash(e);
    }
    if (!live()) return;
    setStatus('reconnecting…', 'off');
    await sleep(backoff);
    backoff = Math.min(backoff * 2, 30000);
  }
}

/** The app ids an event is about (empty: none it names, or all). */
export function appIdsOf(ev) {
  const d = ev.data;
  if (!d || typeof d !== 'object') return [];
  const ids = new Set();
  if (typeof d.appId === 'string') ids.add(d.appId);
  if (d.appDefinition && typeof d.appDefinition.id === 'string') ids.add(d.appDefinition.id);
  const plan = d.plan;
  if (plan && Array.isArray(plan.steps)) {
    for (const s of plan.steps) for (const a of s.actions || []) if (a.app) ids.add(a.app);
  }
  if (d.currentStep && Array.isArray(d.currentStep.actions)) {
    for (const a of d.currentStep.actions) if (a.app) ids.add(a.app);
  }
  return [...ids];
}

/** Events that change apps, tasks or deployments. */
export function touchesApps(type) {
  return type === 'status_update_event' || type === 'health_status_changed_event'
    || type === 'instance_health_changed_event' || type.startsWith('deployment_')
    || type === 'api_post_event' || type === 'app_terminated_event' || type === 'group_change_success'
    || type === 'scaling_event' || type === 'unhealthy_instance_kill_event' || type === 'stream_reconnected';
}
