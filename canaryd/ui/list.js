// The rollouts page: filter by namespace, target and phase; live from the list's event
// stream (GET /api/v1/events: the rows, then one event per change), reconnected with
// Last-Event-ID after a drop. A filter change opens a new stream.
import {watchList} from './api.js';
import {h, fill, phaseBadge, weightsText, age, PHASES} from './dom.js';

const AGE_MS = 10000; // the age column is recomputed locally, without asking the server

function detailHref(ns, name) {
  return `#/rollouts/${encodeURIComponent(ns)}/${encodeURIComponent(name)}`;
}

function row(item) {
  const meta = item.metadata || {};
  const spec = item.spec || {};
  const status = item.status && typeof item.status === 'object' ? item.status : {};
  const ns = String(meta.namespace || '');
  const name = String(meta.name || '');
  const weights = status.weights && Number.isFinite(status.weights.canary) ? status.weights : null;
  const bar = h('span', {class: 'wbar', title: weightsText(weights)},
    h('meter', {min: 0, max: 100, value: weights ? weights.canary : 0}), ` ${weights ? weights.canary : 0}%`);
  return h('tr', {'data-rollout': `${ns}/${name}`},
    h('td', {}, ns),
    h('td', {}, h('a', {href: detailHref(ns, name)}, name)),
    h('td', {}, String(spec.target || '')),
    h('td', {class: 'version'}, String(spec.version || '')),
    h('td', {}, phaseBadge(status.phase || 'Pending')),
    h('td', {}, bar),
    h('td', {}, status.stepProgress ? String(status.stepProgress) : ''),
    h('td', {class: 'age', 'data-created': String(meta.creationTimestamp || '')}, age(meta.creationTimestamp)),
    h('td', {class: 'reason'}, String(status.reason || '')));
}

export function mount(root, ctx, params) {
  const filters = {namespace: params.get('namespace') || '', target: params.get('target') || '',
    phase: params.get('phase') || ''};
  const body = h('tbody', {});
  const note = h('p', {class: 'muted', id: 'list-status'}, 'loading…');
  const input = (key, label) => h('label', {}, label, h('input', {
    name: key, value: filters[key], placeholder: 'any', autocomplete: 'off', spellcheck: 'false',
    oninput: (e) => { filters[key] = e.target.value.trim(); changed(); }}));
  const select = h('select', {name: 'phase', onchange: (e) => { filters.phase = e.target.value; changed(); }},
    h('option', {value: ''}, 'any'),
    PHASES.map((p) => h('option', {value: p, selected: p === filters.phase}, p)));
  fill(root,
    h('h1', {}, 'Rollouts'),
    h('form', {class: 'filters', onsubmit: (e) => e.preventDefault()},
      input('namespace', 'namespace '), input('target', 'target '), h('label', {}, 'phase ', select)),
    h('table', {class: 'rollouts'},
      h('thead', {}, h('tr', {}, ['namespace', 'name', 'target', 'version', 'phase', 'canary',
        'step', 'age', 'reason'].map((c) => h('th', {}, c)))),
      body),
    note);

  const state = h('span', {id: 'stream-state', class: 'muted'}, 'connecting…');
  root.append(h('p', {class: 'muted'}, 'stream: ', state));
  const rows = new Map(); // "ns/name" -> its <tr>, kept in key order in the table
  let synced = false;
  let timer = null;
  let feed = null;

  function query() {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(filters)) if (v) q.set(k, v);
    return q;
  }

  function summary() {
    if (!synced) return;
    if (rows.size === 0) {
      fill(body, h('tr', {class: 'empty'}, h('td', {colspan: 9, class: 'muted'}, 'no rollouts match')));
    } else {
      body.querySelector('tr.empty')?.remove();
    }
    fill(note, `${rows.size} rollout${rows.size === 1 ? '' : 's'}`);
    note.className = 'muted';
  }

  function upsert(item) {
    const key = `${(item.metadata || {}).namespace}/${(item.metadata || {}).name}`;
    const tr = row(item);
    const old = rows.get(key);
    if (old) { old.replaceWith(tr); rows.set(key, tr); return; }
    body.querySelector('tr.empty')?.remove();
    let next = null; // the first shown row sorting after this one
    for (const [k, el] of rows) if (k > key && (next === null || k < next[0])) next = [k, el];
    body.insertBefore(tr, next ? next[1] : null);
    rows.set(key, tr);
  }

  function remove(key) {
    const old = rows.get(key);
    if (old) { old.remove(); rows.delete(key); }
  }

  function open() {
    feed = watchList(query(), {
      event(type, data) {
        if (type === 'reset') { rows.clear(); fill(body); synced = false; }
        else if (type === 'added' || type === 'modified') upsert(data);
        else if (type === 'deleted') remove(String(data.rollout));
        else if (type === 'synced') synced = true;
        summary();
      },
      status(text) {
        fill(state, text);
        state.className = text === 'live' ? 'live' : 'reconnecting';
      },
      fatal(err) {
        if (err.status === 401) { ctx.signOut('the token was refused'); return; }
        fill(state, 'stopped');
        state.className = 'error';
        fill(note, `could not list: ${err.message}`);
        note.className = 'error';
      },
      end() {},
    });
  }

  function changed() {
    const shown = query();
    const hash = shown.toString() ? `#/?${shown}` : '#/';
    history.replaceState(null, '', hash);
    clearTimeout(timer);
    if (feed) feed.close();
    feed = null;
    timer = setTimeout(() => { rows.clear(); fill(body); synced = false; open(); }, 250);
  }

  const ages = setInterval(() => {
    for (const td of body.querySelectorAll('td.age')) td.textContent = age(td.dataset.created);
  }, AGE_MS);

  open();
  return {stop: () => { clearTimeout(timer); clearInterval(ages); if (feed) feed.close(); }};
}
