// DOM helpers. Every value becomes a text node or an attribute value set with
// setAttribute: nothing from a rollout is ever parsed as HTML.
const SVG = 'http://www.w3.org/2000/svg';

function setAttrs(el, attrs) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith('on') && typeof value === 'function') {
      el.addEventListener(key.slice(2), value);
    } else {
      el.setAttribute(key, value === true ? '' : String(value));
    }
  }
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** An HTML element: h('td', {class: 'x'}, 'text', otherNode). */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

/** An SVG element, the same way. */
export function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG, tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

/** Replace an element's children. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

export function fmtNumber(value) {
  if (value === null || value === undefined) return '–';
  if (typeof value !== 'number' || !Number.isFinite(value)) return String(value);
  const size = Math.abs(value);
  if (size >= 1000 || (size >= 1 && Number.isInteger(value))) return value.toFixed(0);
  return String(Number(value.toPrecision(4)));
}

export function withUnit(value, unit) {
  const text = fmtNumber(value);
  if (!unit || text === '–') return text;
  return unit === '%' ? text + unit : `${text} ${unit}`;
}

export function fmtTime(text) {
  if (!text) return '';
  const date = new Date(text);
  if (Number.isNaN(date.getTime())) return String(text);
  return date.toISOString().slice(11, 19);
}

export function age(text) {
  const date = new Date(text);
  if (!text || Number.isNaN(date.getTime())) return '';
  const secs = Math.max(0, Math.round((Date.now() - date.getTime()) / 1000));
  if (secs < 120) return `${secs}s`;
  if (secs < 7200) return `${Math.round(secs / 60)}m`;
  if (secs < 172800) return `${Math.round(secs / 3600)}h`;
  return `${Math.round(secs / 86400)}d`;
}

export function weightsText(weights) {
  if (!weights || typeof weights !== 'object' || !Number.isFinite(weights.canary)
      || !Number.isFinite(weights.stable)) return '–';
  return `canary ${weights.canary}% / stable ${weights.stable}%`;
}

export const PHASES = ['Pending', 'Progressing', 'Paused', 'Promoting', 'Succeeded',
  'RollingBack', 'RolledBack', 'Failed', 'Aborted'];
export const TERMINAL = new Set(['Succeeded', 'RolledBack', 'Failed', 'Aborted']);

export function phaseBadge(phase) {
  const known = PHASES.includes(phase) ? phase : 'Unknown';
  return h('span', {class: `phase phase-${known}`}, phase === undefined ? 'Pending' : phase);
}
