// What the apps and app pages both read out of Marathon's JSON.

import { encPath } from './dom.js';

/** `/shop/web` → `/v2/apps/shop/web` */
export const appUrl = (id) => '/v2/apps' + encPath(id);
/** `/shop/web` → `#/apps/shop/web` */
export const appHref = (id) => '#/apps' + encPath(id);

/** Why a queue entry waits, in words. */
export function queueReason(q) {
  if (!q) return '';
  const left = q.delay && q.delay.timeLeftSeconds;
  const rejects = q.processedOffersSummary && q.processedOffersSummary.rejectSummaryLastOffers;
  const reason = rejects && rejects.length ? rejects.map((r) => r.reason).filter(Boolean).join('; ') : '';
  if (left > 0) return `backoff, ${left}s left${reason ? '; ' + reason : ''}`;
  return reason || 'queued';
}

/** {key, text} of an app's status: running, deploying, suspended or waiting. */
export function appStatus(app, q) {
  if (q && q.count > 0) return { key: 'waiting', text: `Waiting (${queueReason(q)})` };
  if (app.deployments && app.deployments.length) return { key: 'deploying', text: 'Deploying' };
  if (app.instances === 0) return { key: 'suspended', text: 'Suspended' };
  return { key: 'running', text: 'Running' };
}

/** Queue entries by app id. */
export function queueByApp(body) {
  const m = new Map();
  for (const q of (body && body.queue) || []) if (q.app && q.app.id) m.set(q.app.id, q);
  return m;
}

/** Fields the API adds to an app that a definition does not take. */
const READ_ONLY = ['version', 'versionInfo', 'tasksStaged', 'tasksRunning', 'tasksHealthy', 'tasksUnhealthy',
  'deployments', 'tasks', 'lastTaskFailure', 'taskStats', 'readinessCheckResults', 'counts'];

export function editable(app) {
  const out = {};
  for (const [k, v] of Object.entries(app)) if (!READ_ONLY.includes(k)) out[k] = v;
  return out;
}

/** `healthy` when every health check result is alive, `unhealthy` when one is not, else `unknown`. */
export function taskHealth(t) {
  const r = t.healthCheckResults || [];
  if (!r.length) return 'unknown';
  return r.every((x) => x.alive) ? 'healthy' : 'unhealthy';
}
