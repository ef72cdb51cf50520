// #/login: a token for offerd (sent as Authorization: Bearer) and, optionally, another for the
// catalog (X-Consul-Token). Kept in sessionStorage: gone when the tab closes.

import { S, offerd as offerdApi, isOfferd, hasCatalog, setTokens, token, ownCatalogToken, flash, clearFlash } from '../api.js';
import { h } from '../dom.js';

export function render(ctx) {
  const offerd = isOfferd();
  const tokenInput = h('input', { id: 'login-token', name: 'token', type: 'password', autocomplete: 'current-password', required: offerd && !(S.self && !S.self.authRequired), value: token() || (offerd ? '' : ownCatalogToken()) });
  const catInput = offerd && hasCatalog()
    ? h('input', { id: 'login-catalog-token', name: 'catalog-token', type: 'password', autocomplete: 'off', value: ownCatalogToken() })
    : null;
  const error = h('p', { id: 'login-error', class: 'error', role: 'status' });
  const submit = h('button', { id: 'login-submit', type: 'submit', class: 'primary', text: 'Log in' });
  const form = h('form', { id: 'login-form', class: 'login', novalidate: true },
    // Browsers expect a user name beside a password; a token has none.
    h('input', { type: 'text', name: 'username', autocomplete: 'username', value: 'token', hidden: true, 'aria-hidden': 'true', tabindex: '-1', 'aria-label': 'User name (not used)' }),
    h('div', { class: 'field' },
      h('label', { for: 'login-token', text: offerd ? 'Token' : 'Catalog token (ACL secret ID)' }),
      tokenInput),
    catInput && h('div', { class: 'field' },
      h('label', { for: 'login-catalog-token', text: 'Catalog token, if different' }),
      catInput,
      h('p', { class: 'hint', id: 'login-catalog-hint', text: 'Sent to the catalog as X-Consul-Token; without one, the token above is sent.' })),
    submit, error);
  if (catInput) catInput.setAttribute('aria-describedby', 'login-catalog-hint');

  ctx.main.append(
    h('h1', { text: 'Log in' }),
    h('p', { text: offerd
      ? (S.self && !S.self.authRequired
        ? 'offerd needs no credentials; a token here is used for the catalog.'
        : 'offerd needs a principal\'s token.')
      : 'Without a token the catalog answers what its anonymous token may read.' }),
    form);

  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    error.textContent = '';
    const t = tokenInput.value.trim();
    const ct = catInput ? catInput.value.trim() : '';
    if (offerd) {
      if (!t && !(S.self && !S.self.authRequired)) {
        error.textContent = 'Enter a token.';
        tokenInput.focus();
        return;
      }
      setTokens(t, ct);
    } else {
      // At catalogd the one token is the catalog's.
      setTokens('', t);
    }
    submit.disabled = true;
    try {
      if (offerd) {
        try {
          await offerdApi('/v1/auth/self');
        } catch (e) {
          if (e.status === 401) {
            setTokens('', '');
            error.textContent = e.message;
            flash(e);
            tokenInput.focus();
            return;
          }
          throw e;
        }
      }
      clearFlash();
      await S.relogin(null);
    } catch (e) {
      flash(e);
    } finally {
      submit.disabled = false;
    }
  });
  ctx.ready();
  tokenInput.focus();
}
