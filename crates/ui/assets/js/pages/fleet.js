// #/fleet: offerd's agents (GET /v1/agents), their use of what they offer, their node checks
// from the catalog, drain and undrain for admins.

import { offerd, catalog, hasCatalog, isAdmin, flash } from '../api.js';
import { h, setText, table, Keyed, num, ago, badge, STATUS_ORDER, worst } from '../dom.js';

const REFRESH_MS = 5000;
/** Up to this many agents, each node's checks are read alone; past it, all node checks at once. */
const PER_NODE_MAX = 40;

export async function render(ctx) {
  const admin = isAdmin();
  const summary = h('p', { id: 'fleet-summary', class: 'summary', role: 'status' });
  const cols = ['Node', 'State', 'CPUs used / offered', 'Memory (MB)', 'Disk (MB)', 'Ports', 'Attributes', 'Tasks', 'Last seen'];
  if (hasCatalog()) cols.push('Node checks');
  if (admin) cols.push({ label: 'Actions', cls: 'actions' });
  const t = table('agents-table', 'Agents', cols);
  ctx.main.append(h('h1', { text: 'Fleet' }), summary, t.wrap);

  const meterCell = (field) => {
    const meter = h('meter', { min: 0, max: 1, value: 0 });
    const text = h('span', { class: 'meter-text' });
    return { td: h('td', { 'data-field': field, class: 'meter-cell' }, meter, ' ', text), meter, text };
  };
  const rows = new Keyed(t.tbody, 'data-agent', (node) => {
    const r = {
      node: h('th', { scope: 'row', 'data-field': 'node' }),
      state: h('td', { 'data-field': 'state' }),
      cpus: meterCell('cpus'), mem: meterCell('mem'), disk: meterCell('disk'),
      ports: h('td', { 'data-field': 'ports' }),
      attributes: h('td', { 'data-field': 'attributes' }),
      tasks: h('td', { 'data-field': 'tasks', class: 'num' }),
      seen: h('td', { 'data-field': 'last-seen' }),
      checks: hasCatalog() ? h('td', { 'data-field': 'checks' }) : null,
      actions: admin ? h('td', { 'data-field': 'actions', class: 'actions' }) : null,
      key: '',
    };
    r.tr = h('tr', null, r.node, r.state, r.cpus.td, r.mem.td, r.disk.td, r.ports, r.attributes, r.tasks, r.seen, r.checks, r.actions);
    r.nodeName = node;
    return r;
  }, (r, a) => {
    const key = JSON.stringify(a, (k, v) => (k === 'last_seen_ms_ago' ? undefined : v));
    setText(r.seen, ago(a.last_seen_ms_ago));
    if (key === r.key) return;
    r.key = key;
    r.node.replaceChildren(h('span', { class: 'mono', text: a.node }), h('br'), h('span', { class: 'muted small', text: a.address }));
    if (r.state.textContent !== a.state) r.state.replaceChildren(badge(a.state));
    const res = a.resources || {};
    const used = a.used || {};
    meter(r.cpus, used.cpus, res.cpus, `CPUs of ${a.node}`);
    meter(r.mem, used.mem, res.mem, `Memory of ${a.node}`);
    meter(r.disk, used.disk, res.disk, `Disk of ${a.node}`);
    setText(r.ports, (res.ports || []).map((p) => (p.begin === p.end ? `${p.begin}` : `${p.begin}-${p.end}`)).join(', '));
    setText(r.attributes, Object.entries(a.attributes || {}).map(([k, v]) => `${k}=${v}`).join(', '));
    setText(r.tasks, a.tasks);
    if (r.actions) {
      const drain = a.state === 'active';
      const cls = drain ? 'agent-drain' : 'agent-undrain';
      if (!r.actions.firstChild || !r.actions.firstChild.classList.contains(cls)) {
        r.actions.replaceChildren(h('button', {
          type: 'button', class: `${cls} write-action`, text: drain ? 'Drain' : 'Undrain',
          'aria-label': `${drain ? 'Drain' : 'Undrain'} ${a.node}`,
          onclick: (ev) => setDrain(ev.currentTarget, r.nodeName, drain),
        }));
      }
    }
  });

  function meter(m, used, offered, label) {
    m.meter.max = offered > 0 ? offered : 1;
    m.meter.value = Math.max(0, used || 0);
    m.meter.setAttribute('aria-label', label);
    setText(m.text, `${num(used || 0)} / ${num(offered || 0)}`);
  }

  async function setDrain(button, node, on) {
    button.disabled = true;
    try {
      await offerd(`/v1/agents/${encodeURIComponent(node)}/drain`, { method: on ? 'POST' : 'DELETE', signal: ctx.signal });
      await load();
    } catch (e) {
      flash(e);
    } finally {
      button.disabled = false;
    }
  }

  let checksAt = 0;
  async function load() {
    const agents = await offerd('/v1/agents', { signal: ctx.signal });
    agents.sort((a, b) => (a.node < b.node ? -1 : a.node > b.node ? 1 : 0));
    await rows.sync(agents, (a) => a.node, ctx.signal);
    const by = (s) => agents.filter((a) => a.state === s).length;
    setText(summary, agents.length
      ? `${agents.length} agents: ${by('active')} active, ${by('draining')} draining, ${by('drained')} drained, ${by('lost')} lost`
      : 'No agent has registered.');
    if (hasCatalog() && Date.now() - checksAt >= REFRESH_MS - 100) {
      checksAt = Date.now();
      loadChecks(agents).catch((e) => flash(e));
    }
  }

  async function loadChecks(agents) {
    const byNode = new Map();
    if (agents.length <= PER_NODE_MAX) {
      await Promise.all(agents.map(async (a) => {
        byNode.set(a.node, await catalog(`/v1/health/node/${encodeURIComponent(a.node)}`, { signal: ctx.signal }) || []);
      }));
    } else {
      for (const c of await catalog('/v1/health/state/any', { signal: ctx.signal }) || []) {
        if (!byNode.has(c.Node)) byNode.set(c.Node, []);
        byNode.get(c.Node).push(c);
      }
    }
    for (const a of agents) {
      const r = rows.rows.get(a.node);
      if (r && r.checks) showChecks(r.checks, byNode.get(a.node) || []);
    }
  }

  function showChecks(td, checks) {
    const nodeChecks = checks.filter((c) => !c.ServiceID)
      .sort((a, b) => (STATUS_ORDER[a.Status] ?? 3) - (STATUS_ORDER[b.Status] ?? 3) || String(a.Name).localeCompare(b.Name));
    const svc = checks.filter((c) => c.ServiceID);
    const key = JSON.stringify([nodeChecks.map((c) => [c.Name, c.Status, c.Output]), svc.map((c) => c.Status)]);
    if (td.dataset.key === key) return;
    td.dataset.key = key;
    const items = nodeChecks.map((c) => h('li', { title: c.Output || '' }, badge(c.Status), ' ', c.Name || c.CheckID));
    if (svc.length) {
      const count = (s) => svc.filter((c) => (s === 'critical' ? c.Status === 'critical' || c.Status === 'maintenance' : c.Status === s)).length;
      items.push(h('li', { class: 'muted' }, badge(worst(svc.map((c) => c.Status))),
        ` service checks: ${count('passing')} passing, ${count('warning')} warning, ${count('critical')} critical`));
    }
    td.replaceChildren(items.length ? h('ul', { class: 'checks' }, items) : h('span', { class: 'muted', text: 'not in the catalog' }));
  }

  await load();
  ctx.ready();

  let pending = false;
  let last = 0;
  const refresh = () => {
    if (pending || ctx.signal.aborted) return;
    pending = true;
    const wait = Math.max(0, 1000 - (Date.now() - last));
    ctx.later(async () => {
      last = Date.now();
      try { await load(); } catch (e) { flash(e); } finally { pending = false; }
    }, wait);
  };
  ctx.every(refresh, REFRESH_MS);
  ctx.on((ev) => {
    if (ev.type === 'status_update_event' || ev.type === 'stream_reconnected' || ev.type.startsWith('deployment_')) refresh();
  });
}
