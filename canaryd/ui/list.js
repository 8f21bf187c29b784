// The rollouts page: filter by namespace, target and phase; refreshed every 2 s from the
// API's watch-fed cache while shown (the list has no event stream of its own).
import {api, ApiError} from './api.js';
import {h, fill, phaseBadge, weightsText, age, PHASES} from './dom.js';

const REFRESH_MS = 2000;

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
    h('td', {}, age(meta.creationTimestamp)),
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

  let timer = null;
  let stopped = false;
  let generation = 0; // a filter change starts a new refresh loop; older ones end
  let abort = new AbortController();

  function query() {
    const q = new URLSearchParams({limit: '500'});
    for (const [k, v] of Object.entries(filters)) if (v) q.set(k, v);
    return q;
  }

  function changed() {
    const shown = new URLSearchParams();
    for (const [k, v] of Object.entries(filters)) if (v) shown.set(k, v);
    const hash = shown.toString() ? `#/?${shown}` : '#/';
    history.replaceState(null, '', hash);
    clearTimeout(timer);
    abort.abort();
    abort = new AbortController();
    generation += 1;
    timer = setTimeout(refresh, 250, generation);
  }

  async function refresh(mine = generation) {
    if (stopped || mine !== generation) return;
    try {
      const page = await api(`/rollouts?${query()}`, {signal: abort.signal});
      if (mine !== generation) return;
      fill(body, page.items.length ? page.items.map(row)
        : h('tr', {}, h('td', {colspan: 9, class: 'muted'}, 'no rollouts match')));
      fill(note, `${page.items.length} rollout${page.items.length === 1 ? '' : 's'}`,
        page.metadata.continue ? ' (first 500)' : '', ` · updated ${new Date().toISOString().slice(11, 19)}`);
      note.className = 'muted';
    } catch (err) {
      if (err.name === 'AbortError' || mine !== generation) return;
      if (err instanceof ApiError && err.status === 401) { ctx.signOut('the token was refused'); return; }
      fill(note, `could not refresh: ${err.message}`);
      note.className = 'error';
    }
    if (!stopped && mine === generation) timer = setTimeout(refresh, REFRESH_MS, mine);
  }

  refresh();
  return {stop: () => { stopped = true; clearTimeout(timer); abort.abort(); }};
}
