// The parts of the rollout page, each a pure function from data to elements.
import {h, fmtTime, withUnit, weightsText, phaseBadge, TERMINAL} from './dom.js';

function stepsOf(spec) {
  if (spec.strategy === 'blueGreen') {
    const bg = spec.blueGreen || {};
    return [{weight: 0, label: 'green behind the preview Service', gate: bg.approval ? 'manual' : null},
      {weight: 100, label: 'active Service switched to green', pause: bg.postPromotion}];
  }
  const plan = spec.plan || {};
  if (Array.isArray(plan.steps)) return plan.steps.filter((x) => x && typeof x === 'object');
  const stepWeight = Number(plan.stepWeight);
  const top = Number(plan.maxWeight || 100);
  if (!(stepWeight > 0)) return [];
  const out = [];
  for (let w = stepWeight; w <= top && out.length < 100; w += stepWeight) {
    out.push({weight: w, pause: plan.stepPause, maxPause: plan.stepMaxPause});
  }
  if (!out.length || out[out.length - 1].weight !== top) out.push({weight: top, pause: plan.stepPause});
  return out;
}

export function planSection(obj) {
  const spec = obj.spec || {};
  const status = obj.status || {};
  const steps = stepsOf(spec);
  const current = Number.isInteger(status.stepIndex) ? status.stepIndex : 0;
  const phase = status.phase || 'Pending';
  const done = TERMINAL.has(phase);
  const items = steps.map((step, i) => {
    const state = done || i < current ? 'done' : (i === current && phase !== 'Pending' ? 'current' : 'todo');
    const parts = [`${step.weight}%`];
    if (step.label) parts.push(step.label);
    if (step.pause) parts.push(`pause ${step.pause}`);
    if (step.maxPause) parts.push(`up to ${step.maxPause} for evidence`);
    if (step.gate) parts.push(`gate: ${step.gate}`);
    if (step.analysis === false) parts.push('no analysis');
    return h('li', {class: `step step-${state}`, 'data-step': i + 1},
      h('span', {class: 'stepno'}, `${i + 1}`), parts.join(' · '),
      state === 'current' ? h('span', {class: 'here'}, ' ◀ now') : null);
  });
  return h('section', {id: 'plan'}, h('h2', {}, 'Plan'),
    h('ol', {class: 'steps'}, items.length ? items : h('li', {class: 'muted'}, 'no steps')));
}

export function summary(obj, streamState, analysis) {
  const meta = obj.metadata || {};
  const spec = obj.spec || {};
  const status = obj.status || {};
  const rows = [
    ['phase', phaseBadge(status.phase || 'Pending')],
    ['target', String(spec.target || '')],
    ['version', String(spec.version || '')],
    ['strategy', spec.strategy === 'blueGreen' ? 'blue-green' : 'canary'],
    ['traffic', weightsText(status.weights)],
    ['step', status.stepProgress ? String(status.stepProgress) : ''],
    ['reason', h('span', {id: 'reason'}, String(status.reason || ''))],
  ];
  if (analysis) {
    rows.push(['analysis', h('span', {id: 'analysis-profile'},
      h('a', {href: '#/profiles'}, String(analysis.profile)), `, every ${analysis.interval}`)]);
  }
  if (status.rollbackReason) rows.push(['rollback reason', h('span', {id: 'rollback-reason'}, String(status.rollbackReason))]);
  if (status.pausedBy) rows.push(['paused by', String(status.pausedBy)]);
  if (streamState) rows.push(['stream', h('span', {id: 'stream-state'}, streamState)]);
  rows.push(['created', String(meta.creationTimestamp || '')]);
  return h('dl', {class: 'summary'}, rows.map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
}

export function metadataSection(obj) {
  const meta = obj.metadata || {};
  const entries = [];
  for (const kind of ['labels', 'annotations']) {
    const map = meta[kind];
    if (!map || typeof map !== 'object') continue;
    for (const [k, v] of Object.entries(map)) {
      if (k === 'kubectl.kubernetes.io/last-applied-configuration') continue;
      entries.push(h('tr', {}, h('td', {}, kind.slice(0, -1)), h('td', {class: 'key'}, k), h('td', {class: 'annotation'}, String(v))));
    }
  }
  if (!entries.length) return null;
  return h('section', {id: 'metadata'}, h('h2', {}, 'Labels and annotations'),
    h('table', {}, h('tbody', {}, entries)));
}

export function historySection(transitions, hookEvents, gaps, verdict) {
  const transitionRow = (t) => h('tr', {'data-seq': t.seq},
    h('td', {}, String(t.seq)), h('td', {}, fmtTime(t.time)),
    h('td', {}, `${t.source} → `, phaseBadge(t.phase)), h('td', {}, String(t.trigger || '')),
    h('td', {}, weightsText(t.weights)), h('td', {class: 'reason'}, String(t.reason || '')));
  const hookRow = (e) => h('tr', {'data-seq': e.seq, class: 'hook-event'},
    h('td', {}, String(e.seq)), h('td', {}, fmtTime(e.time)),
    h('td', {}, `hook ${e.name || ''} (${e.stage || ''})`), h('td', {}, String(e.outcome || '')),
    h('td', {}, ''), h('td', {class: 'reason'}, e.outcome === 'Running' ? '' : String(e.reason || '')));
  const rows = [...transitions.map((t) => ({seq: t.seq, row: transitionRow(t)})),
    ...hookEvents.map((e) => ({seq: e.seq, row: hookRow(e)}))]
    .sort((a, b) => (Number(a.seq) || 0) - (Number(b.seq) || 0)) // stable: ties keep order
    .map((r) => r.row);
  const notes = gaps.map((g) => h('p', {class: 'muted'},
    `${g.missing} older event(s) (seq ${g.from}–${g.to}) are no longer kept in the rollout status`));
  const end = verdict ? h('p', {id: 'verdict', class: verdict.succeeded ? 'ok' : 'bad'},
    `verdict: ${verdict.phase}: `, h('span', {class: 'reason'}, String(verdict.reason || ''))) : null;
  return h('section', {id: 'history'}, h('h2', {}, 'History'), notes,
    h('table', {},
      h('thead', {}, h('tr', {}, ['seq', 'time', 'phase', 'trigger', 'traffic', 'reason'].map((c) => h('th', {}, c)))),
      h('tbody', {}, rows.length ? rows : h('tr', {}, h('td', {colspan: 6, class: 'muted'}, 'no transitions yet')))),
    end);
}

export function hooksSection(obj) {
  // Any client with status access may write status.hooks: only objects are shown.
  const objects = (list) => (Array.isArray(list) ? list.filter((x) => x && typeof x === 'object') : []);
  const declared = objects((obj.spec || {}).hooks);
  const runs = objects((obj.status || {}).hooks);
  const body = [];
  if (declared.length) {
    body.push(h('ul', {class: 'hooks'}, declared.map((hook) => h('li', {},
      `${hook.stage || ''}: ${hook.name || ''}`))));
  }
  if (runs.length) {
    body.push(h('table', {},
      h('thead', {}, h('tr', {}, ['stage', 'hook', 'step', 'outcome', 'started', 'finished', 'reason'].map((c) => h('th', {}, c)))),
      h('tbody', {}, runs.map((r) => h('tr', {},
        h('td', {}, String(r.stage || '')), h('td', {}, String(r.name || '')),
        h('td', {}, Number.isInteger(r.step) ? String(r.step + 1) : ''),
        h('td', {class: `outcome-${['Passed', 'Failed', 'Running', 'Waiting'].includes(r.outcome) ? r.outcome : 'other'}`}, String(r.outcome || '')),
        h('td', {}, fmtTime(r.started)), h('td', {}, fmtTime(r.finished)),
        h('td', {class: 'reason'}, String(r.reason || '')))))));
  }
  if (!body.length) body.push(h('p', {class: 'muted'}, 'this rollout has no hooks'));
  return h('section', {id: 'hooks'}, h('h2', {}, 'Hooks'), body);
}

export function checksTable(checks) {
  const recent = checks.slice(-40).reverse();
  return h('section', {id: 'check-results'}, h('h2', {}, 'Analysis runs (latest first)'),
    h('table', {},
      h('thead', {}, h('tr', {}, ['run', 'time', 'step', 'check', 'canary', 'stable', 'threshold', 'verdict', 'reason'].map((c) => h('th', {}, c)))),
      h('tbody', {}, recent.length ? recent.map((c) => h('tr', {},
        h('td', {}, `${c.seq}.${c.index}`), h('td', {}, fmtTime(c.time)), h('td', {}, String(c.stepNumber)),
        h('td', {}, String(c.metric || '')), h('td', {}, withUnit(c.value, c.unit)),
        h('td', {}, withUnit(c.stableValue, c.unit)), h('td', {}, String(c.threshold || '')),
        h('td', {class: `verdict v-${['Pass', 'Fail', 'Inconclusive', 'NotApplicable'].includes(c.verdict) ? c.verdict : 'other'}`},
          String(c.verdict || ''), c.dryRun ? ' (dry run)' : ''),
        h('td', {class: 'reason'}, String(c.reason || ''))))
        : h('tr', {}, h('td', {colspan: 9, class: 'muted'}, 'no analysis runs yet')))));
}
