// #/services/<name>: a service's instances with their checks, tags and meta, and what lbconf
// routes to it; followed with blocking queries on /v1/health/service/<name>.

import { watch } from '../api.js';
import { h, setText, table, Keyed, badge, encPath } from '../dom.js';
import { catalogAvailable, statusOf, checkList, lbRoutes } from '../catalog.js';

export async function render(ctx) {
  const name = ctx.params.name;
  if (!catalogAvailable(ctx, `Service ${name}`)) return;
  const summary = h('p', { id: 'service-summary', class: 'summary', role: 'status' });
  const routes = h('p', { id: 'service-routes' });
  const t = table('instances-table', 'Instances', ['Instance', 'Node', 'Address', 'Status', 'Checks', 'Tags', 'Meta']);
  ctx.main.append(
    h('p', { class: 'crumbs' }, h('a', { href: '#/services', text: 'Services' }), ' / '),
    h('h1', null, 'Service ', h('span', { class: 'mono', text: name })),
    summary, routes, t.wrap);

  const rows = new Keyed(t.tbody, 'data-instance', () => {
    const r = {
      id: h('th', { scope: 'row', 'data-field': 'id', class: 'mono' }),
      node: h('td', { 'data-field': 'node' }),
      address: h('td', { 'data-field': 'address', class: 'mono' }),
      status: h('td', { 'data-field': 'status' }),
      checks: h('td', { 'data-field': 'checks' }),
      tags: h('td', { 'data-field': 'tags' }),
      meta: h('td', { 'data-field': 'meta' }),
      key: '',
    };
    r.tr = h('tr', null, r.id, r.node, r.address, r.status, r.checks, r.tags, r.meta);
    return r;
  }, (r, e) => {
    const key = JSON.stringify(e);
    if (key === r.key) return;
    r.key = key;
    const s = e.Service;
    setText(r.id, s.ID);
    setText(r.node, e.Node.Node);
    setText(r.address, `${s.Address || e.Node.Address}:${s.Port}`);
    const st = statusOf(e.Checks);
    r.status.replaceChildren(badge(st));
    r.checks.replaceChildren(checkList(e.Checks, true));
    setText(r.tags, (s.Tags || []).join(', '));
    const meta = Object.entries(s.Meta || {});
    r.meta.replaceChildren(meta.length
      ? h('dl', { class: 'meta' }, meta.map(([k, v]) => h('div', null, h('dt', { text: k }), h('dd', { text: v }))))
      : h('span', { class: 'muted', text: '—' }));
  });

  let first = true;
  await watch(`/v1/health/service/${encPath(name)}`, async (list) => {
    list = list || [];
    list.sort((a, b) => (`${a.Node.Node}/${a.Service.ID}` < `${b.Node.Node}/${b.Service.ID}` ? -1 : 1));
    await rows.sync(list, (e) => `${e.Node.Node}/${e.Service.ID}`, ctx.signal);
    const n = { passing: 0, warning: 0, critical: 0 };
    for (const e of list) n[statusOf(e.Checks)]++;
    setText(summary, list.length
      ? `${list.length} instance${list.length > 1 ? 's' : ''}: ${n.passing} passing, ${n.warning} warning, ${n.critical} critical`
      : `No instances of ${name} are registered.`);
    const r = list.length ? lbRoutes(list[0].Service.Meta) : [];
    routes.replaceChildren(...(r.length
      ? ['Routed by lbconf: ', ...r.flatMap((x, i) => [i ? ', ' : '', h('span', { class: 'mono', text: x })]),
        ` (to its ${n.passing} passing instance${n.passing === 1 ? '' : 's'})`]
      : ['Not routed by lbconf (no lb_vhost, or lb_mode tcp with lb_port, in its meta).']));
    if (first) { first = false; ctx.ready(); }
  }, ctx.signal, { onError: () => ctx.ready() });
}
