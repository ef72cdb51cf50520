// What the catalog pages share: the catalog's unavailability message, check lists, statuses.

import { h, badge, worst, STATUS_ORDER } from './dom.js';
import { hasCatalog } from './api.js';

/** False (with a message on the page) when this offerd has no catalog. */
export function catalogAvailable(ctx, title) {
  if (hasCatalog()) return true;
  ctx.main.append(h('h1', { text: title }), h('p', { class: 'notice', text: 'This offerd has no catalog (--catalog): services, nodes and keys are not shown.' }));
  ctx.ready();
  return false;
}

export const statusOf = (checks) => worst((checks || []).map((c) => c.Status));

export function sortChecks(checks) {
  return (checks || []).slice().sort((a, b) => (STATUS_ORDER[a.Status] ?? 3) - (STATUS_ORDER[b.Status] ?? 3)
    || String(a.Name || a.CheckID).localeCompare(String(b.Name || b.CheckID)));
}

/** A list of checks: status, name, and (with `output`) what the check said. */
export function checkList(checks, output) {
  if (!checks || !checks.length) return h('span', { class: 'muted', text: 'no checks' });
  return h('ul', { class: 'checks' }, sortChecks(checks).map((c) => h('li', { 'data-check': c.CheckID },
    badge(c.Status), ' ', c.Name || c.CheckID,
    output && c.Output ? h('pre', { class: 'output', text: c.Output.trim().slice(0, 2000) }) : null)));
}

/** What lbconf makes of a service's meta (lbconf/src/model.rs): its routes, in words. */
export function lbRoutes(meta) {
  meta = meta || {};
  const mode = (meta.lb_mode || '').trim().toLowerCase();
  if (mode === 'tcp') {
    const port = meta.lb_port || meta.service_port;
    return port ? [`TCP port ${port}`] : [];
  }
  if (mode && mode !== 'http') return [];
  if (!meta.lb_vhost) return [];
  const path = meta.lb_path || '/';
  return meta.lb_vhost.split(',').map((s) => s.trim()).filter(Boolean).map((host) => `${host}${path}`);
}
