// The configuration's analysis profiles, read-only.
import {api, ApiError} from './api.js';
import {h, fill, fmtNumber} from './dom.js';

function thresholds(c) {
  const parts = [];
  if (c.min !== null && c.min !== undefined) parts.push(`≥ ${fmtNumber(c.min)}${c.unit === '%' ? '%' : c.unit ? ` ${c.unit}` : ''}`);
  if (c.max !== null && c.max !== undefined) parts.push(`≤ ${fmtNumber(c.max)}${c.unit === '%' ? '%' : c.unit ? ` ${c.unit}` : ''}`);
  if (c.maxRatioToStable) parts.push(`≤ ${fmtNumber(c.maxRatioToStable)} × stable`);
  if (c.sequential) parts.push(`sequential: e-value < ${fmtNumber(1 / c.sequential.alpha)} (alpha ${c.sequential.alpha}, ratio ${c.sequential.ratio})`);
  return parts.join(' and ');
}

function profile(p) {
  const l = p.limits || {};
  return h('section', {class: 'profile', 'data-profile': p.name},
    h('h2', {}, p.name),
    h('p', {class: 'muted'}, `interval ${p.interval} (${p.minInterval}–${p.maxInterval}) · at least ${p.minRequests} requests · ` +
      `${p.minPassedRuns} passing run(s) per step · limits: ${l.failures} failures, ${l.consecutiveFailures} in a row, ` +
      `${l.consecutiveInconclusive} inconclusive in a row then ${l.onInconclusive}` +
      (p.allowUnanalysedPromotion ? ' · unanalysed promotion allowed' : '')),
    h('table', {},
      h('thead', {}, h('tr', {}, ['check', 'threshold', 'unit', 'parameters', 'about'].map((c) => h('th', {}, c)))),
      h('tbody', {}, p.checks.map((c) => h('tr', {},
        h('td', {}, c.metric, c.dryRun ? ' (dry run)' : ''), h('td', {}, thresholds(c)), h('td', {}, c.unit),
        h('td', {}, Object.entries(c.params || {}).map(([k, v]) => `${k}=${v}`).join(', ')),
        h('td', {class: 'muted'}, c.description))))),
    (p.hooks || []).length ? h('p', {class: 'hooks'}, 'hooks: ',
      p.hooks.map((hook) => `${hook.name} (${hook.stage})`).join(', ')) : null);
}

export function mount(root, ctx) {
  fill(root, h('h1', {}, 'Analysis profiles'), h('p', {class: 'muted'}, 'loading…'));
  (async () => {
    try {
      const data = await api('/profiles');
      fill(root, h('h1', {}, 'Analysis profiles'),
        h('p', {class: 'muted'}, 'From the live configuration (read-only). A rollout may only tighten these.'),
        data.items.map(profile));
    } catch (err) {
      if (err instanceof ApiError && err.status === 401) { ctx.signOut('the token was refused'); return; }
      fill(root, h('p', {class: 'error'}, `cannot load the profiles: ${err.message}`));
    }
  })();
  return {stop: () => {}};
}
