// Small hand-written SVG plots: a check's value per analysis run against its threshold
// band (stable beside the canary), and the canary's weight over time. Text via text nodes.
import {s, fmtNumber, withUnit, fmtTime} from './dom.js';

const W = 340;
const H = 150;
const PAD = {left: 58, right: 10, top: 10, bottom: 24};

function scaleLinear(lo, hi, outLo, outHi) {
  const span = hi - lo || 1;
  return (v) => outLo + ((v - lo) / span) * (outHi - outLo);
}

function finite(v) { return typeof v === 'number' && Number.isFinite(v); }

/** The y domain: every value shown, the thresholds, a little room. */
function domain(values, log) {
  let lo = Math.min(...values);
  let hi = Math.max(...values);
  if (!Number.isFinite(lo)) { lo = 0; hi = 1; }
  if (lo === hi) { lo -= log ? 1 : Math.abs(lo) * 0.05 || 1; hi += log ? 1 : Math.abs(hi) * 0.05 || 1; }
  const room = (hi - lo) * 0.08;
  return [lo - room, hi + room];
}

/**
 * points: [{seq, step, value, stable, verdict, threshold, reason, time, unit}] in run order.
 * spec: the check's thresholds ({min, max, maxRatioToStable, sequential}) or null.
 */
export function checkPlot(metric, points, spec) {
  const sequential = !!(spec && spec.sequential);
  const log = sequential;
  const tf = (v) => (log ? Math.log10(Math.max(v, 1e-3)) : v);
  const limit = sequential ? 1 / spec.sequential.alpha : null;
  const ys = [];
  const ratio = spec && finite(spec.maxRatioToStable) ? spec.maxRatioToStable : null;
  for (const p of points) {
    if (finite(p.value)) ys.push(tf(p.value));
    if (finite(p.stable)) ys.push(tf(p.stable));
    if (ratio !== null && finite(p.stable)) ys.push(tf(p.stable * ratio)); // each run's limit
  }
  for (const t of [spec && spec.min, spec && spec.max, limit]) if (finite(t)) ys.push(tf(t));
  const [lo, hi] = domain(ys, log);
  const y = scaleLinear(lo, hi, H - PAD.bottom, PAD.top);
  const n = Math.max(points.length, 1);
  const x = (i) => PAD.left + (n === 1 ? (W - PAD.left - PAD.right) / 2
    : (i / (n - 1)) * (W - PAD.left - PAD.right));
  const unit = (points.find((p) => p.unit) || {}).unit || '';
  const svg = s('svg', {class: 'plot', viewBox: `0 0 ${W} ${H}`, role: 'img',
    'data-check': metric, 'data-runs': points.length,
    'aria-label': `${metric}: ${points.length} analysis runs`});
  const top = PAD.top;
  const bottom = H - PAD.bottom;
  // The passing band.
  let bandLo = null;
  let bandHi = null;
  if (sequential) { bandLo = lo; bandHi = tf(limit); } else if (spec) {
    if (finite(spec.min) || finite(spec.max)) {
      bandLo = finite(spec.min) ? tf(spec.min) : lo;
      bandHi = finite(spec.max) ? tf(spec.max) : hi;
    }
  }
  if (bandLo !== null) {
    const y1 = Math.max(top, Math.min(bottom, y(bandHi)));
    const y2 = Math.max(top, Math.min(bottom, y(bandLo)));
    svg.append(s('rect', {class: 'band', x: PAD.left, y: y1, width: W - PAD.left - PAD.right,
      height: Math.max(0, y2 - y1)}, s('title', {}, 'passing band')));
  }
  for (const t of sequential ? [limit] : [spec && spec.min, spec && spec.max]) {
    if (!finite(t)) continue;
    svg.append(s('line', {class: 'threshold', x1: PAD.left, x2: W - PAD.right, y1: y(tf(t)), y2: y(tf(t))}));
  }
  // Axes and labels.
  svg.append(s('line', {class: 'axis', x1: PAD.left, x2: PAD.left, y1: top, y2: bottom}));
  svg.append(s('line', {class: 'axis', x1: PAD.left, x2: W - PAD.right, y1: bottom, y2: bottom}));
  const label = (v) => (log ? `e ${fmtNumber(10 ** v)}` : withUnit(v, unit));
  svg.append(s('text', {class: 'tick', x: PAD.left - 4, y: top + 8, 'text-anchor': 'end'}, label(hi)));
  svg.append(s('text', {class: 'tick', x: PAD.left - 4, y: bottom, 'text-anchor': 'end'}, label(lo)));
  // Step boundaries along x.
  let prevStep = null;
  points.forEach((p, i) => {
    if (p.step === prevStep) return;
    prevStep = p.step;
    svg.append(s('text', {class: 'tick', x: x(i), y: H - 8, 'text-anchor': 'middle'}, `step ${p.step}`));
    if (i > 0) svg.append(s('line', {class: 'stepline', x1: x(i) - 0.5, x2: x(i) - 0.5, y1: top, y2: bottom}));
  });
  // maxRatioToStable: each run's own limit, from stable's value in the same query.
  if (spec && finite(spec.maxRatioToStable)) {
    points.forEach((p, i) => {
      if (!finite(p.stable)) return;
      const yy = y(tf(p.stable * spec.maxRatioToStable));
      if (yy < top || yy > bottom) return;
      svg.append(s('line', {class: 'ratio', x1: x(i) - 5, x2: x(i) + 5, y1: yy, y2: yy},
        s('title', {}, `limit ${withUnit(p.stable * spec.maxRatioToStable, unit)} (${spec.maxRatioToStable} x stable)`)));
    });
  }
  for (const [key, cls] of [['stable', 'stable'], ['value', 'canary']]) {
    const coords = [];
    points.forEach((p, i) => { if (finite(p[key])) coords.push(`${x(i).toFixed(1)},${y(tf(p[key])).toFixed(1)}`); });
    if (coords.length > 1) svg.append(s('polyline', {class: `series ${cls}`, points: coords.join(' ')}));
  }
  points.forEach((p, i) => {
    const when = `run ${p.seq} (step ${p.step}, ${fmtTime(p.time)})`;
    const verdict = ['Pass', 'Fail', 'Inconclusive', 'NotApplicable'].includes(p.verdict) ? p.verdict : 'other';
    const cy = finite(p.value) ? y(tf(p.value)) : bottom - 3;
    svg.append(s('circle', {class: `pt canary v-${verdict}${finite(p.value) ? '' : ' novalue'}`,
      cx: x(i), cy, r: 3.5},
    s('title', {}, `${when}: canary ${withUnit(p.value, p.unit)} ${p.verdict} (${p.threshold}): ${p.reason}`)));
    if (finite(p.stable)) { // a ring, so that a stable value equal to the canary's still shows
      svg.append(s('circle', {class: 'pt stable', cx: x(i), cy: y(tf(p.stable)), r: 6},
        s('title', {}, `${when}: stable ${withUnit(p.stable, p.unit)}`)));
    }
  });
  return svg;
}

/** transitions: [{time, weights}] in order; until: a Date or null (now). */
export function weightTimeline(transitions, until) {
  const pts = transitions.filter((t) => t.weights && finite(t.weights.canary) && t.time)
    .map((t) => ({t: new Date(t.time).getTime(), w: t.weights.canary}))
    .filter((p) => Number.isFinite(p.t));
  const width = 700;
  const height = 130;
  const pad = {left: 40, right: 12, top: 10, bottom: 24};
  const svg = s('svg', {class: 'plot timeline', viewBox: `0 0 ${width} ${height}`, role: 'img',
    'data-changes': pts.length, 'aria-label': `canary weight over time: ${pts.length} changes`});
  const end = until ? until.getTime() : Date.now();
  const start = pts.length ? pts[0].t : end - 60000;
  const x = scaleLinear(start, Math.max(end, start + 1000), pad.left, width - pad.right);
  const y = scaleLinear(0, 100, height - pad.bottom, pad.top);
  for (const w of [0, 50, 100]) {
    svg.append(s('line', {class: w === 0 ? 'axis' : 'grid', x1: pad.left, x2: width - pad.right, y1: y(w), y2: y(w)}));
    svg.append(s('text', {class: 'tick', x: pad.left - 4, y: y(w) + 4, 'text-anchor': 'end'}, `${w}%`));
  }
  if (pts.length) {
    const path = [];
    pts.forEach((p, i) => {
      if (i === 0) path.push(`M${x(p.t).toFixed(1)},${y(p.w).toFixed(1)}`);
      else path.push(`H${x(p.t).toFixed(1)}`, `V${y(p.w).toFixed(1)}`);
    });
    path.push(`H${x(end).toFixed(1)}`);
    svg.append(s('path', {class: 'series canary', d: path.join(' ')}));
    for (const p of pts) {
      svg.append(s('circle', {class: 'pt canary', cx: x(p.t), cy: y(p.w), r: 3},
        s('title', {}, `${new Date(p.t).toISOString().slice(11, 19)}: canary ${p.w}%`)));
    }
  }
  svg.append(s('text', {class: 'tick', x: pad.left, y: height - 6}, pts.length ? new Date(start).toISOString().slice(11, 19) : ''));
  svg.append(s('text', {class: 'tick', x: width - pad.right, y: height - 6, 'text-anchor': 'end'}, new Date(end).toISOString().slice(11, 19)));
  return svg;
}
