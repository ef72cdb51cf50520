// The app editor (#app-editor, a modal dialog): the definition as JSON; POST /v2/apps for a new
// app, PUT /v2/apps/ID?partialUpdate=false for an existing one. A JSON error is shown before
// anything is sent; Marathon's 422 details are listed by path; a 409 (a deployment under way)
// offers to force.

import { offerd, flash, clearFlash } from './api.js';
import { h } from './dom.js';
import { appUrl } from './marathon.js';

/** opts: {title, app (object), id (existing app's id, or none for a new app), onSaved(id, answer)} */
export function openEditor(ctx, { title, app, id, onSaved }) {
  document.getElementById('app-editor')?.remove();
  const text = h('textarea', {
    id: 'app-json', rows: 24, cols: 80, spellcheck: 'false', autocomplete: 'off',
    'aria-describedby': 'app-errors app-editor-status',
  });
  text.value = JSON.stringify(app, null, 2) + '\n';
  const errors = h('ul', { id: 'app-errors', class: 'errors', 'aria-live': 'polite' });
  const status = h('p', { id: 'app-editor-status', role: 'status' });
  const save = h('button', { type: 'button', id: 'app-save', class: 'write-action primary', text: id ? 'Save (new version)' : 'Create app' });
  const force = h('button', { type: 'button', id: 'app-force', class: 'write-action danger', hidden: true, text: 'Force: cancel the deployment and save' });
  const cancel = h('button', { type: 'button', id: 'app-cancel', text: 'Cancel' });
  const dialog = h('dialog', { id: 'app-editor', 'aria-labelledby': 'app-editor-title', class: 'editor' },
    h('h2', { id: 'app-editor-title', text: title }),
    h('label', { for: 'app-json', text: 'App definition (Marathon JSON)' }),
    text, errors, status,
    h('div', { class: 'buttons' }, save, force, cancel));
  document.body.append(dialog);

  const close = () => { if (dialog.open) dialog.close(); dialog.remove(); };
  ctx.cleanup(close);
  cancel.addEventListener('click', close);
  dialog.addEventListener('close', () => dialog.remove());

  function showErrors(items) {
    errors.replaceChildren(...items.map(([path, msg]) => h('li', { 'data-path': path, text: path ? `${path}: ${msg}` : msg })));
  }

  async function submit(forced) {
    showErrors([]);
    status.textContent = '';
    force.hidden = true;
    let body;
    try {
      body = JSON.parse(text.value);
    } catch (e) {
      showErrors([['', `Not valid JSON: ${e.message}`]]);
      status.textContent = 'Nothing was sent.';
      text.focus();
      return;
    }
    if (!body || typeof body !== 'object' || Array.isArray(body)) {
      showErrors([['', 'The definition must be a JSON object.']]);
      status.textContent = 'Nothing was sent.';
      return;
    }
    const q = forced ? 'force=true' : '';
    const url = id ? `${appUrl(id)}?partialUpdate=false${q ? '&' + q : ''}` : `/v2/apps${q ? '?' + q : ''}`;
    save.disabled = true;
    status.textContent = 'Saving…';
    try {
      const answer = await offerd(url, { method: id ? 'PUT' : 'POST', body, signal: ctx.signal });
      close();
      clearFlash();
      onSaved && onSaved(id || (answer && answer.id) || body.id, answer);
    } catch (e) {
      if (e.name === 'AbortError') return;
      status.textContent = 'Not saved: nothing was changed.';
      flash(e);
      if (e.status === 422 && e.body && Array.isArray(e.body.details)) {
        const items = [];
        for (const d of e.body.details) for (const m of d.errors || []) items.push([d.path, m]);
        showErrors(items.length ? items : [['', e.message]]);
      } else if (e.status === 409) {
        showErrors([['', e.message]]);
        if (e.body && e.body.deployments) force.hidden = false;
      } else {
        showErrors([['', e.message]]);
      }
    } finally {
      save.disabled = false;
    }
  }
  save.addEventListener('click', () => submit(false));
  force.addEventListener('click', () => submit(true));
  dialog.showModal();
  text.focus();
  text.setSelectionRange(0, 0);
  text.scrollTop = 0;
}
