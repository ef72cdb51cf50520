// #/nodes: every node in the catalog with its node checks and the services it runs;
// followed with blocking queries on /v1/cairn/catalog.

import { watch } from '../api.js';
import { h, setText, table, Keyed, badge, encPath } from '../dom.js';
import { catalogAvailable, statusOf, checkList } from '../catalog.js';

const RANK = { critical: 0, warning: 1, passing: 2 };

export async function render(ctx) {
  if (!catalogAvailable(ctx, 'Nodes')) return;
  const count = h('p', { id: 'nodes-count', class: 'summary', role: 'status' });
  const t = table('nodes-table', 'Nodes', ['Node', 'Address', 'Status', 'Node checks', 'Services']);
  ctx.main.append(h('h1', { text: 'Nodes' }), count, t.wrap);

  const rows = new Keyed(t.tbody, 'data-node', (name) => {
    const r = {
      name: h('th', { scope: 'row', 'data-field': 'node', class: 'mono', text: name }),
      address: h('td', { 'data-field': 'address', class: 'mono' }),
      status: h('td', { 'data-field': 'status' }),
      checks: h('td', { 'data-field': 'checks' }),
      services: h('td', { 'data-field': 'services' }),
      key: '',
    };
    r.tr = h('tr', null, r.name, r.address, r.status, r.checks, r.services);
    return r;
  }, (r, n) => {
    const key = JSON.stringify([n.address, n.status, n.checks, n.services]);
    if (key === r.key) return;
    r.key = key;
    setText(r.address, n.address);
    r.status.replaceChildren(badge(n.status));
    r.checks.replaceChildren(checkList(n.checks, false));
    r.services.replaceChildren(n.services.length
      ? h('ul', { class: 'plain' }, n.services.map((s) => h('li', null,
        badge(s.status), ' ', h('a', { href: '#/services/' + encPath(s.name), text: s.name }),
        s.id !== s.name ? h('span', { class: 'muted small', text: ` (${s.id}, port ${s.port})` }) : h('span', { class: 'muted small', text: ` (port ${s.port})` }))))
      : h('span', { class: 'muted', text: 'none' }));
  });

  let first = true;
  await watch('/v1/cairn/catalog', async (body) => {
    const by = new Map();
    for (const n of (body && body.Nodes) || []) {
      by.set(n.Node.Node, { name: n.Node.Node, address: n.Node.Address, checks: n.Checks || [], services: [] });
    }
    for (const e of (body && body.Services) || []) {
      let n = by.get(e.Node.Node);
      if (!n) { n = { name: e.Node.Node, address: e.Node.Address, checks: [], services: [] }; by.set(n.name, n); }
      n.services.push({ name: e.Service.Service, id: e.Service.ID, port: e.Service.Port, status: statusOf(e.Checks) });
    }
    const list = [...by.values()];
    for (const n of list) {
      n.status = statusOf(n.checks);
      n.services.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : a.id < b.id ? -1 : 1));
    }
    list.sort((a, b) => RANK[a.status] - RANK[b.status] || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    await rows.sync(list, (n) => n.name, ctx.signal);
    const crit = list.filter((n) => n.status === 'critical').length;
    setText(count, `${list.length} node${list.length === 1 ? '' : 's'}${crit ? `, ${crit} critical` : ''}`);
    if (first) { first = false; ctx.ready(); }
  }, ctx.signal, { onError: () => ctx.ready() });
}
