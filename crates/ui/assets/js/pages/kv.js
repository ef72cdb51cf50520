// #/kv/<prefix>: the catalog's key/value store, one folder at a time (followed with blocking
// queries), a key's value to read and, where the token may write it, to change with
// check-and-set: a value changed by someone else meanwhile is never overwritten.

import { catalog, watch, authorize, flash } from '../api.js';
import { h, setText, encPath } from '../dom.js';
import { catalogAvailable } from '../catalog.js';

function decode(b64) {
  if (!b64) return { text: '', binary: false, size: 0 };
  const bin = atob(b64);
  const bytes = Uint8Array.from(bin, (c) => c.charCodeAt(0));
  try {
    return { text: new TextDecoder('utf-8', { fatal: true }).decode(bytes), binary: false, size: bytes.length };
  } catch {
    return { text: b64, binary: true, size: bytes.length };
  }
}

const kvHref = (k) => '#/kv/' + encPath(k);

export async function render(ctx) {
  if (!catalogAvailable(ctx, 'Key/value')) return;
  const path = ctx.params.path || '';
  const folder = path === '' || path.endsWith('/') ? path : path.slice(0, path.lastIndexOf('/') + 1);
  const initialKey = path === folder ? null : path;
  const { signal } = ctx;

  // --- skeleton -----------------------------------------------------------------------------
  const crumbs = h('nav', { id: 'kv-path', class: 'crumbs', 'aria-label': 'Folder' });
  const segs = folder.split('/').filter(Boolean);
  crumbs.append(h('a', { href: '#/kv/', text: '(root)' }));
  segs.forEach((s, i) => {
    const p = segs.slice(0, i + 1).join('/') + '/';
    crumbs.append(' / ', i === segs.length - 1 ? h('span', { 'aria-current': 'page', text: s }) : h('a', { href: kvHref(p), text: s }));
  });
  const list = h('ul', { id: 'kv-keys', class: 'keys' });
  const listNote = h('p', { id: 'kv-empty', class: 'muted', hidden: true });
  const status = h('p', { id: 'kv-status', role: 'status' });
  const createBox = h('div', { id: 'kv-create-box' });
  const editor = h('section', { id: 'kv-editor', hidden: true, 'aria-labelledby': 'kv-key-title' });
  ctx.main.append(
    h('h1', { text: 'Key/value' }), crumbs,
    h('div', { class: 'kv-layout' },
      h('section', { class: 'kv-list', 'aria-label': 'Keys' }, list, listNote, createBox),
      h('div', { class: 'kv-main' }, status, editor)));

  // --- the folder ---------------------------------------------------------------------------
  let openKey = null;
  function showList(keys) {
    keys = (keys || []).filter((k) => k !== folder).sort();
    listNote.hidden = keys.length > 0;
    setText(listNote, folder ? `Nothing under ${folder}.` : 'The store is empty.');
    list.replaceChildren(...keys.map((k) => {
      const isFolder = k.endsWith('/');
      const label = k.slice(folder.length);
      const a = h('a', { href: kvHref(k), 'data-key': k, class: isFolder ? 'folder' : 'key', text: label });
      if (!isFolder) {
        a.addEventListener('click', (ev) => {
          if (ev.ctrlKey || ev.metaKey || ev.shiftKey) return;
          ev.preventDefault();
          open(k);
        });
        if (k === openKey) a.setAttribute('aria-current', 'true');
      }
      return h('li', null, a);
    }));
  }

  // --- creating -----------------------------------------------------------------------------
  const [mayCreate] = await authorize([{ Resource: 'key', Segment: folder, Access: 'write' }], signal);
  if (mayCreate) {
    const newKey = h('input', { id: 'kv-new-key', type: 'text', class: 'write-action', autocomplete: 'off', spellcheck: 'false', value: folder });
    const newValue = h('textarea', { id: 'kv-new-value', class: 'write-action', rows: 3 });
    const create = h('button', { type: 'button', id: 'kv-create', class: 'write-action', text: 'Create key' });
    createBox.append(h('h2', { text: 'New key' }),
      h('div', { class: 'field' }, h('label', { for: 'kv-new-key', text: 'Key (full path)' }), newKey),
      h('div', { class: 'field' }, h('label', { for: 'kv-new-value', text: 'Value' }), newValue),
      create);
    create.addEventListener('click', async () => {
      const key = newKey.value.trim().replace(/^\/+/, '');
      if (!key) { setText(status, 'Enter the new key\'s name.'); newKey.focus(); return; }
      create.disabled = true;
      try {
        const ok = await catalog(`/v1/kv/${encPath(key)}?cas=0`, { method: 'PUT', body: newValue.value, signal });
        if (ok === true) {
          newValue.value = '';
          newKey.value = folder;
          await open(key);
          setText(status, `Saved: created ${key}.`);
        } else {
          await open(key);
          setText(status, `Not created: ${key} exists already (changed by someone else); its current value is shown.`);
        }
      } catch (e) {
        setText(status, `Not created: ${e.message}`);
        flash(e);
      } finally {
        create.disabled = false;
      }
    });
  }

  // --- a key --------------------------------------------------------------------------------
  let entry = null;
  async function open(key) {
    openKey = key;
    for (const a of list.querySelectorAll('a[data-key]')) {
      if (a.dataset.key === key) a.setAttribute('aria-current', 'true'); else a.removeAttribute('aria-current');
    }
    if (location.hash !== kvHref(key)) history.replaceState(null, '', kvHref(key));
    setText(status, '');
    const [got, [mayWrite]] = await Promise.all([
      catalog(`/v1/kv/${encPath(key)}`, { signal, okStatuses: [404] }).catch((e) => { if (e.name !== 'AbortError') flash(e); return undefined; }),
      authorize([{ Resource: 'key', Segment: key, Access: 'write' }], signal),
    ]);
    if (signal.aborted || openKey !== key) return;
    entry = got && got[0];
    showEditor(key, mayWrite);
  }

  function showEditor(key, mayWrite, draft) {
    editor.hidden = false;
    const title = h('h2', { id: 'kv-key-title' }, 'Key ', h('span', { class: 'mono', text: key }));
    if (!entry) {
      editor.replaceChildren(title, h('p', { class: 'notice', text: `${key} does not exist (any more).` }));
      return;
    }
    const v = decode(entry.Value);
    const text = h('textarea', { id: 'kv-value', rows: 14, spellcheck: 'false', readonly: !mayWrite || v.binary });
    text.value = v.text;
    const meta = h('p', { id: 'kv-meta', class: 'muted small', text:
      `${v.size} bytes · ModifyIndex ${entry.ModifyIndex} · Flags ${entry.Flags || 0}${entry.Session ? ' · locked by session ' + entry.Session : ''}${v.binary ? ' · not UTF-8: shown as base64, read only' : ''}` });
    editor.dataset.modifyIndex = entry.ModifyIndex;
    const buttons = h('div', { class: 'buttons' });
    if (mayWrite && !v.binary) {
      buttons.append(
        h('button', { type: 'button', id: 'kv-save', class: 'write-action primary', text: 'Save', onclick: () => save(key, text) }),
        h('button', { type: 'button', id: 'kv-delete', class: 'write-action danger', text: 'Delete', onclick: () => del(key) }));
    } else if (mayWrite) {
      buttons.append(h('button', { type: 'button', id: 'kv-delete', class: 'write-action danger', text: 'Delete', onclick: () => del(key) }));
    }
    editor.replaceChildren(title, h('label', { for: 'kv-value', text: 'Value' }), text, meta, buttons);
    if (draft != null) editor.append(h('details', { id: 'kv-draft', open: true }, h('summary', { text: 'Your text that was not saved' }), h('pre', { text: draft })));
  }

  async function reload(key, draft) {
    const [got, [mayWrite]] = await Promise.all([
      catalog(`/v1/kv/${encPath(key)}`, { signal, okStatuses: [404] }),
      authorize([{ Resource: 'key', Segment: key, Access: 'write' }], signal),
    ]);
    entry = got && got[0];
    showEditor(key, mayWrite, draft);
  }

  async function save(key, text) {
    const index = entry.ModifyIndex;
    const flags = entry.Flags ? `&flags=${entry.Flags}` : '';
    const draft = text.value;
    try {
      const ok = await catalog(`/v1/kv/${encPath(key)}?cas=${index}${flags}`, { method: 'PUT', body: draft, signal });
      if (ok === true) {
        await reload(key);
        setText(status, `Saved ${key}.`);
      } else {
        await reload(key, draft);
        setText(status, `Not saved: ${key} was changed by someone else since you opened it. Its current value is shown; your text is kept below.`);
      }
    } catch (e) {
      setText(status, `Not saved: ${e.message}`);
      flash(e);
    }
  }

  async function del(key) {
    try {
      const ok = await catalog(`/v1/kv/${encPath(key)}?cas=${entry.ModifyIndex}`, { method: 'DELETE', signal });
      if (ok === true) {
        entry = null;
        openKey = null;
        editor.hidden = true;
        editor.replaceChildren();
        history.replaceState(null, '', kvHref(folder));
        setText(status, `Deleted ${key}.`);
      } else {
        await reload(key);
        setText(status, `Not deleted: ${key} was changed by someone else since you opened it. Its current value is shown.`);
      }
    } catch (e) {
      setText(status, `Not deleted: ${e.message}`);
      flash(e);
    }
  }

  let first = true;
  const opening = initialKey ? open(initialKey).catch(flash) : null;
  await watch(`/v1/kv/${encPath(folder)}?keys&separator=/`, async (keys) => {
    showList(keys);
    if (first) {
      first = false;
      await opening;
      ctx.ready();
    }
  }, signal, { notFound: true, onError: () => ctx.ready() });
}
