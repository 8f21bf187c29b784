// canaryd's dashboard: sign-in, navigation, and the three pages (hash routes, so the
// server serves one document and no URL ever carries the token).
import {api, token, ApiError} from './api.js';
import {h, fill} from './dom.js';
import * as list from './list.js';
import * as detail from './detail.js';
import * as profiles from './profiles.js';

const main = document.getElementById('main');
const nav = document.getElementById('nav');
const who = document.getElementById('who');
const ctx = {me: null, signOut};
let page = null;

function signOut(why) {
  token.clear();
  ctx.me = null;
  route(why);
}

function login(why) {
  fill(nav);
  fill(who);
  const field = h('input', {type: 'password', name: 'token', autocomplete: 'off', required: true,
    placeholder: 'API token', size: 40, id: 'token'});
  const note = h('p', {class: why ? 'error' : 'muted', id: 'login-message'},
    why || 'The token is kept in this tab only (session storage) and sent as a header.');
  const form = h('form', {id: 'login', onsubmit: async (e) => {
    e.preventDefault();
    token.set(field.value.trim());
    try {
      ctx.me = await api('/whoami');
      route();
    } catch (err) {
      token.clear();
      fill(note, err instanceof ApiError && err.status === 401 ? 'unknown token' : `cannot sign in: ${err.message}`);
      note.className = 'error';
    }
  }}, h('label', {for: 'token'}, 'Token '), field, ' ', h('button', {type: 'submit'}, 'Sign in'));
  fill(main, h('h1', {}, 'Sign in'), form, note);
  field.focus();
}

function header() {
  fill(nav, h('a', {href: '#/'}, 'Rollouts'), ' ', h('a', {href: '#/profiles'}, 'Profiles'));
  const scope = ctx.me.namespaces === '*' ? 'all namespaces' : `namespaces ${ctx.me.namespaces.join(', ')}`;
  fill(who, h('span', {id: 'whoami'}, `${ctx.me.name} (${ctx.me.role}; ${scope})`), ' ',
    h('button', {type: 'button', id: 'signout', onclick: () => signOut()}, 'Sign out'));
}

async function route(why) {
  if (page) { page.stop(); page = null; }
  if (!token.get()) { login(why); return; }
  if (!ctx.me) {
    try {
      ctx.me = await api('/whoami');
    } catch (err) {
      if (err instanceof ApiError && err.status === 401) { token.clear(); login('the token was refused'); return; }
      fill(main, h('p', {class: 'error'}, `canaryd does not answer: ${err.message}`));
      return;
    }
  }
  header();
  const hash = location.hash.replace(/^#/, '') || '/';
  const [pathPart, queryPart] = hash.split('?');
  const segments = pathPart.split('/').filter(Boolean).map(decodeURIComponent);
  if (segments[0] === 'rollouts' && segments.length === 3) {
    document.title = `${segments[1]}/${segments[2]} · canaryd`;
    page = detail.mount(main, ctx, segments[1], segments[2]);
  } else if (segments[0] === 'profiles') {
    document.title = 'profiles · canaryd';
    page = profiles.mount(main, ctx);
  } else {
    document.title = 'rollouts · canaryd';
    page = list.mount(main, ctx, new URLSearchParams(queryPart || ''));
  }
}

window.addEventListener('hashchange', () => route());
route();
