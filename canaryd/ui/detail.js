// One rollout: summary, plan with the current step, weight timeline, one plot per check,
// hooks, history. Live through the rollout's event stream (api.follow).
import {api, follow, mayOperate, ApiError} from './api.js';
import {h, fill, TERMINAL} from './dom.js';
import {checkPlot, weightTimeline} from './plot.js';
import {planSection, summary, metadataSection, historySection, hooksSection, checksTable} from './sections.js';

// Check results kept by an open page (status itself keeps controller.checksKept of them).
const MAX_CHECKS = 2000;

const ACTIONS = [
  ['pause', 'Pause', 'Pause the rollout? Analysis and steps stop; traffic stays where it is.'],
  ['resume', 'Resume', 'Resume the rollout? A manual gate is approved.'],
  ['promote', 'Promote', 'Promote the rollout? The remaining steps are skipped and all traffic goes to the canary.'],
  ['abort', 'Abort', 'Abort the rollout? All traffic goes back to stable.'],
];

export function mount(root, ctx, ns, name) {
  const key = `${ns}/${name}`;
  const model = {obj: null, analysis: null, transitions: [], checks: [], hookEvents: [], gaps: [], verdict: null,
    deleted: false, stream: 'connecting'};
  const path = `/rollouts/${encodeURIComponent(ns)}/${encodeURIComponent(name)}`;
  const parts = {
    head: h('div', {id: 'head'}), actions: h('div', {id: 'actions'}), message: h('p', {id: 'action-message'}),
    plan: h('div', {}), timeline: h('section', {id: 'timeline'}), plots: h('section', {id: 'checks'}),
    hooks: h('div', {}), history: h('div', {}), table: h('div', {}), meta: h('div', {}),
  };
  fill(root, h('p', {}, h('a', {href: '#/'}, '← rollouts')), h('h1', {}, key), parts.head, parts.actions,
    parts.message, h('div', {class: 'columns'}, parts.plan, parts.timeline), parts.plots, parts.hooks,
    parts.history, parts.table, parts.meta);
  let stopped = false;
  let stream = null;
  let refreshing = null;
  let scheduled = false;

  function render() {
    scheduled = false;
    if (stopped || !model.obj) return;
    const obj = model.obj;
    if (!obj.status || typeof obj.status !== 'object') obj.status = {}; // written by anyone
    const phase = obj.status.phase || 'Pending';
    fill(parts.head, summary(obj, model.deleted ? 'the rollout was deleted' : model.stream, model.analysis));
    renderActions(model.verdict ? model.verdict.phase : phase);
    fill(parts.plan, planSection(obj));
    const until = model.verdict && model.transitions.length
      ? new Date(model.transitions[model.transitions.length - 1].time) : null;
    fill(parts.timeline, h('h2', {}, 'Canary weight'), weightTimeline(model.transitions, until));
    renderPlots();
    fill(parts.hooks, hooksSection(obj));
    fill(parts.history, historySection(model.transitions, model.hookEvents, model.gaps, model.verdict));
    fill(parts.table, checksTable(model.checks));
    fill(parts.meta, metadataSection(obj));
  }

  function schedule() {
    if (!scheduled) { scheduled = true; requestAnimationFrame(render); }
  }

  // A check is its metric, and whether it is a dry run (a rollout may add a dry-run check
  // of a metric its profile already checks).
  const checkKey = (metric, dryRun) => (dryRun ? `${metric}:dry-run` : metric);

  function renderPlots() {
    const byKey = new Map();
    const specs = new Map(((model.analysis || {}).checks || []).map((c) => [checkKey(c.metric, c.dryRun), c]));
    for (const key of specs.keys()) byKey.set(key, []);
    for (const c of model.checks) {
      const key = checkKey(c.metric, c.dryRun);
      if (!byKey.has(key)) byKey.set(key, []);
      byKey.get(key).push({seq: c.seq, step: c.stepNumber, value: c.value, stable: c.stableValue,
        verdict: c.verdict, threshold: c.threshold, reason: c.reason, time: c.time, unit: c.unit});
    }
    const figures = [...byKey.entries()].map(([key, points]) => {
      const spec = specs.get(key) || null;
      const metric = key.replace(/:dry-run$/, '');
      const last = points[points.length - 1];
      return h('figure', {class: 'check', 'data-metric': metric, 'data-check': key},
        h('figcaption', {}, h('strong', {}, metric), key.endsWith(':dry-run') ? ' (dry run)' : '',
          last ? ` · ${last.threshold}` : '', spec && spec.description ? h('span', {class: 'muted'}, ` · ${spec.description}`) : ''),
        checkPlot(key, points, spec),
        h('div', {class: 'legend'}, h('span', {class: 'key-canary'}, '● canary'), ' ',
          h('span', {class: 'key-stable'}, '○ stable'), ' ', h('span', {class: 'key-band'}, '▮ passing band')));
    });
    fill(parts.plots, h('h2', {}, 'Checks'),
      figures.length ? h('div', {class: 'plots'}, figures) : h('p', {class: 'muted'}, 'no checks'));
  }

  function renderActions(phase) {
    if (!mayOperate(ctx.me, ns) || TERMINAL.has(phase) || model.deleted) {
      fill(parts.actions);
      return;
    }
    fill(parts.actions, ACTIONS.map(([action, label, question]) => h('button', {
      type: 'button', class: `action action-${action}`, 'data-action': action,
      onclick: () => act(action, question),
    }, label)));
  }

  async function act(action, question) {
    if (!window.confirm(`${question}\n\n${key}`)) return;
    fill(parts.message, `${action}: sending…`);
    parts.message.className = 'muted';
    try {
      await api(`${path}/${action}`, {method: 'POST'});
      fill(parts.message, `${action} requested; the controller acts on it`);
      parts.message.className = 'ok';
    } catch (err) {
      fill(parts.message, `${action} refused: ${err.message}`);
      parts.message.className = 'error';
    }
    refresh();
  }

  async function refresh() {
    if (refreshing) return refreshing;
    refreshing = (async () => {
      try {
        model.obj = await api(path);
        schedule();
      } catch (err) {
        if (err instanceof ApiError && err.status === 404) model.deleted = true;
        schedule();
      } finally { refreshing = null; }
    })();
    return refreshing;
  }

  function onEvent(type, data) {
    if (type === 'transition') {
      model.transitions.push(data);
      refresh();
    } else if (type === 'check') {
      model.checks.push(data);
      if (model.checks.length > MAX_CHECKS) model.checks.splice(0, model.checks.length - MAX_CHECKS);
    } else if (type === 'hook') {
      model.hookEvents.push(data);
      refresh(); // the hooks table reads status.hooks
    } else if (type === 'state') {
      if (model.obj) refresh(); // a reconnect: where it stands now
    } else if (type === 'gap') {
      model.gaps.push(data);
    } else if (type === 'verdict') {
      model.verdict = data;
      refresh();
    } else if (type === 'deleted') {
      model.deleted = true;
    }
    schedule();
  }

  (async () => {
    try {
      model.obj = await api(path);
    } catch (err) {
      if (err instanceof ApiError && err.status === 401) { ctx.signOut('the token was refused'); return; }
      fill(root, h('p', {class: 'error'}, `cannot show ${key}: ${err.message}`));
      return;
    }
    try {
      model.analysis = await api(`${path}/analysis`);
    } catch {
      model.analysis = null; // plots then show values without a band
    }
    if (stopped) return;
    schedule();
    stream = follow(ns, name, {
      event: onEvent,
      status: (text) => { model.stream = text; schedule(); },
      fatal: (err) => { model.stream = `stopped: ${err.message}`; schedule(); },
      end: () => { model.stream = 'finished'; schedule(); },
    });
  })();
  return {stop: () => { stopped = true; if (stream) stream.close(); }};
}
