// #/events: offerd's event stream as it comes (the page's one shared connection), newest
// first, at most 500, filtered by type or text.

import { h, setText, fmtTime } from '../dom.js';
import { recentEvents, seenTypes, MAX_EVENTS } from '../events.js';

export function render(ctx) {
  const filter = h('input', { id: 'events-filter', type: 'search', autocomplete: 'off', placeholder: 'type, app or task id' });
  const type = h('select', { id: 'events-type' }, h('option', { value: '', text: 'All types' }));
  const count = h('span', { id: 'events-count', class: 'muted', role: 'status' });
  const list = h('ol', { id: 'events-list', class: 'events' });
  ctx.main.append(
    h('h1', { text: 'Events' }),
    h('div', { class: 'toolbar' },
      h('label', { for: 'events-filter', text: 'Filter' }), filter,
      h('label', { for: 'events-type', text: 'Type' }), type, count),
    list);

  const known = new Set();
  function addType(t) {
    if (known.has(t)) return;
    known.add(t);
    const opts = [...type.options].slice(1);
    const before = opts.find((o) => o.value > t) || null;
    type.insertBefore(h('option', { value: t, text: t }), before);
  }

  function summary(ev) {
    const d = ev.data && typeof ev.data === 'object' ? ev.data : {};
    const parts = [];
    if (d.appId) parts.push(d.appId);
    else if (d.appDefinition && d.appDefinition.id) parts.push(d.appDefinition.id);
    else if (d.plan && d.plan.steps) {
      const apps = new Set();
      for (const s of d.plan.steps) for (const a of s.actions || []) apps.add(`${a.action} ${a.app}`);
      parts.push([...apps].join(', '));
    }
    if (d.taskId) parts.push(d.taskId);
    if (d.taskStatus) parts.push(d.taskStatus);
    if (d.alive !== undefined) parts.push(d.alive ? 'alive' : 'not alive');
    if (d.jobId) parts.push(`job ${d.jobId}${d.runId ? ' run ' + d.runId : ''}`);
    if (d.action && d.eventType === 'scaling_event') parts.push(`${d.action} ${d.from} → ${d.to}`);
    if (d.message) parts.push(d.message);
    return parts.join(' · ');
  }

  let needle = '';
  let want = '';
  const matches = (li) => (!want || li.dataset.eventType === want) && (!needle || li._search.includes(needle));

  function item(ev) {
    const when = ev.data && ev.data.timestamp ? ev.data.timestamp : new Date(ev.at).toISOString();
    const pre = h('pre', { class: 'json' });
    const details = h('details', null, h('summary', { text: 'JSON' }), pre);
    details.addEventListener('toggle', () => {
      if (details.open && !pre.firstChild) pre.textContent = JSON.stringify(ev.data, null, 2);
    });
    const li = h('li', { 'data-event-type': ev.type },
      h('time', { datetime: when, text: fmtTime(when) }), ' ',
      h('span', { class: 'ev-type', text: ev.type }), ' ',
      h('span', { class: 'ev-summary', text: summary(ev) }),
      details);
    li._search = `${ev.type} ${ev.raw}`.toLowerCase();
    li.hidden = !matches(li);
    return li;
  }

  function counted() {
    let shown = 0;
    for (const li of list.children) if (!li.hidden) shown++;
    setText(count, `${shown} of ${list.children.length} events (the last ${MAX_EVENTS} are kept)`);
  }

  const frag = document.createDocumentFragment();
  const past = recentEvents();
  for (let i = past.length - 1; i >= 0; i--) frag.append(item(past[i]));
  list.append(frag);
  for (const t of [...seenTypes()].sort()) addType(t);

  let pendingCount = false;
  ctx.on((ev) => {
    if (ev.type === 'stream_reconnected') return;
    addType(ev.type);
    list.prepend(item(ev));
    while (list.children.length > MAX_EVENTS) list.lastElementChild.remove();
    if (!pendingCount) { pendingCount = true; requestAnimationFrame(() => { pendingCount = false; counted(); }); }
  });

  function apply() {
    needle = filter.value.trim().toLowerCase();
    want = type.value;
    for (const li of list.children) li.hidden = !matches(li);
    counted();
  }
  let ft = 0;
  filter.addEventListener('input', () => { clearTimeout(ft); ft = setTimeout(apply, 100); });
  type.addEventListener('change', apply);
  ctx.cleanup(() => clearTimeout(ft));
  counted();
  ctx.ready();
}
