// #/services: every service in the catalog with its instances by status, critical first;
// followed with blocking queries on /v1/cairn/catalog.

import { watch } from '../api.js';
import { h, setText, table, Keyed, badge, encPath } from '../dom.js';
import { catalogAvailable, statusOf, lbRoutes } from '../catalog.js';

const RANK = { critical: 0, warning: 1, passing: 2 };

export async function render(ctx) {
  if (!catalogAvailable(ctx, 'Services')) return;
  const filter = h('input', { id: 'services-filter', type: 'search', autocomplete: 'off', placeholder: 'name or tag' });
  const count = h('span', { id: 'services-count', class: 'muted', role: 'status' });
  const t = table('services-table', 'Services', ['Service', 'Status', 'Passing', 'Warning', 'Critical', 'Tags', 'Routed by lbconf']);
  const empty = h('p', { class: 'muted', hidden: true, text: 'The catalog has no services.' });
  ctx.main.append(h('h1', { text: 'Services' }),
    h('div', { class: 'toolbar' }, h('label', { for: 'services-filter', text: 'Filter' }), filter, count),
    t.wrap, empty);

  let needle = '';
  const rows = new Keyed(t.tbody, 'data-service', (name) => {
    const r = {
      name: h('th', { scope: 'row', 'data-field': 'name' }, h('a', { href: '#/services/' + encPath(name), text: name })),
      status: h('td', { 'data-field': 'status' }),
      passing: h('td', { 'data-field': 'passing', class: 'num' }),
      warning: h('td', { 'data-field': 'warning', class: 'num' }),
      critical: h('td', { 'data-field': 'critical', class: 'num' }),
      tags: h('td', { 'data-field': 'tags' }),
      routes: h('td', { 'data-field': 'routes' }),
      search: name.toLowerCase(),
    };
    r.tr = h('tr', null, r.name, r.status, r.passing, r.warning, r.critical, r.tags, r.routes);
    return r;
  }, (r, s) => {
    if (r.status.textContent !== s.status) r.status.replaceChildren(badge(s.status));
    setText(r.passing, s.passing);
    setText(r.warning, s.warning);
    setText(r.critical, s.critical);
    setText(r.tags, s.tags.join(', '));
    setText(r.routes, s.routes.join(', '));
    r.search = `${s.name} ${s.tags.join(' ')}`.toLowerCase();
    r.tr.hidden = !!needle && !r.search.includes(needle);
  });

  function counted() {
    let shown = 0;
    for (const r of rows.rows.values()) if (!r.tr.hidden) shown++;
    setText(count, needle ? `${shown} of ${rows.rows.size} services` : `${rows.rows.size} services`);
    empty.hidden = rows.rows.size > 0;
  }

  filter.addEventListener('input', () => {
    needle = filter.value.trim().toLowerCase();
    for (const r of rows.rows.values()) r.tr.hidden = !!needle && !r.search.includes(needle);
    counted();
  });

  let first = true;
  await watch('/v1/cairn/catalog', async (body) => {
    const by = new Map();
    for (const e of (body && body.Services) || []) {
      const name = e.Service.Service;
      let s = by.get(name);
      if (!s) { s = { name, passing: 0, warning: 0, critical: 0, tags: new Set(), meta: e.Service.Meta }; by.set(name, s); }
      s[statusOf(e.Checks)]++;
      for (const t of e.Service.Tags || []) s.tags.add(t);
    }
    const list = [...by.values()].map((s) => ({
      ...s,
      tags: [...s.tags].sort(),
      status: s.critical ? 'critical' : s.warning ? 'warning' : 'passing',
      routes: lbRoutes(s.meta),
    }));
    list.sort((a, b) => RANK[a.status] - RANK[b.status] || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    await rows.sync(list, (s) => s.name, ctx.signal);
    counted();
    if (first) { first = false; ctx.ready(); }
  }, ctx.signal, { onError: () => ctx.ready() });
}
