// The canaryd API from the page: the token lives in this tab's sessionStorage and travels
// only in the Authorization header (never in a URL, never in a cookie).
const KEY = 'canaryd.token';
const BASE = '/api/v1';

export const token = {
  get: () => sessionStorage.getItem(KEY),
  set: (value) => sessionStorage.setItem(KEY, value),
  clear: () => sessionStorage.removeItem(KEY),
};

export class ApiError extends Error {
  constructor(status, problem) {
    super((problem && (problem.detail || problem.title)) || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
  }
}

function headers(extra) {
  return {Authorization: `Bearer ${token.get() || ''}`, ...extra};
}

export async function api(path, {method = 'GET', signal} = {}) {
  const resp = await fetch(BASE + path, {
    method, signal, headers: headers({Accept: 'application/json'}),
    credentials: 'omit', cache: 'no-store', redirect: 'error',
  });
  const text = await resp.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = null; }
  if (!resp.ok) throw new ApiError(resp.status, data);
  return data;
}

export const ROLES = {read: 1, submit: 2, operate: 3, admin: 4};

export function mayOperate(me, namespace) {
  if (!me || (ROLES[me.role] || 0) < ROLES.operate) return false;
  return me.namespaces === '*' || (Array.isArray(me.namespaces) && me.namespaces.includes(namespace));
}

const sleep = (ms, signal) => new Promise((resolve) => {
  const timer = setTimeout(resolve, ms);
  signal.addEventListener('abort', () => { clearTimeout(timer); resolve(); }, {once: true});
});

/** Parse text/event-stream chunks into {type, id, data} events (the WHATWG rules). */
export class SseParser {
  constructor(onEvent, onRetry) {
    this.buffer = '';
    this.onEvent = onEvent;
    this.onRetry = onRetry;
    this.reset();
  }

  reset() { this.type = ''; this.data = []; this.id = null; }

  push(chunk) {
    this.buffer += chunk;
    const lines = this.buffer.split(/\r\n|\r|\n/);
    this.buffer = lines.pop();
    for (const line of lines) this.line(line);
  }

  line(line) {
    if (line === '') {
      if (this.data.length) {
        this.onEvent({type: this.type || 'message', id: this.id, data: this.data.join('\n')});
      }
      this.reset();
      return;
    }
    if (line.startsWith(':')) return; // keep-alive comment
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'event') this.type = value;
    else if (field === 'data') this.data.push(value);
    else if (field === 'id') this.id = value;
    else if (field === 'retry' && /^[0-9]+$/.test(value)) this.onRetry(Number(value));
  }
}

/**
 * Read a server-sent event stream with fetch() (EventSource cannot send a header), and
 * reconnect with Last-Event-ID after a drop (a restarted replica, a proxy timeout), backing
 * off from the server's `retry` up to 10 s. An empty `id:` forgets the last id (a re-list).
 * Ends when `ends(type)` says so, or at the first answer that retrying cannot change (401,
 * 403, 404, 400). handlers: {event(type, data, id), status(text), fatal(error), end()}
 */
function stream(url, handlers, ends) {
  const abort = new AbortController();
  let last = null;
  let retry = 2000;
  let attempts = 0;
  const run = async () => {
    while (!abort.signal.aborted) {
      let finished = false;
      try {
        const extra = {Accept: 'text/event-stream'};
        if (last !== null) extra['Last-Event-ID'] = last;
        const resp = await fetch(url, {headers: headers(extra), signal: abort.signal,
          credentials: 'omit', cache: 'no-store'});
        if (!resp.ok) {
          let problem = null;
          try { problem = await resp.json(); } catch { problem = null; }
          const error = new ApiError(resp.status, problem);
          if (![429, 502, 503, 504].includes(resp.status)) { handlers.fatal(error); return; }
          throw error;
        }
        attempts = 0;
        handlers.status('live');
        const parser = new SseParser((ev) => {
          if (ev.id !== null) last = ev.id === '' ? null : ev.id;
          let data = null;
          try { data = JSON.parse(ev.data); } catch { return; }
          if (ends(ev.type)) finished = true;
          handlers.event(ev.type, data, ev.id);
        }, (ms) => { retry = Math.min(Math.max(ms, 250), 30000); });
        const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
        for (;;) {
          const {value, done} = await reader.read();
          if (done) break;
          parser.push(value);
        }
      } catch (err) {
        if (abort.signal.aborted) return;
        handlers.status(`reconnecting (${err.message || err})`);
      }
      if (finished) { handlers.end(); return; }
      attempts += 1;
      const delay = Math.min(retry * 2 ** Math.max(0, attempts - 1), 10000);
      handlers.status(`reconnecting in ${Math.round(delay / 100) / 10}s`);
      await sleep(delay, abort.signal);
    }
  };
  run();
  return {close: () => abort.abort(), lastId: () => last};
}

/** A rollout's event stream: the server resumes right after the last event received; it
 * ends after `verdict` or `deleted`. */
export function follow(namespace, name, handlers) {
  const url = `${BASE}/rollouts/${encodeURIComponent(namespace)}/${encodeURIComponent(name)}/events`;
  return stream(url, handlers, (type) => type === 'verdict' || type === 'deleted');
}

/** The rollout list's event stream (GET /api/v1/events?query): reset, added, modified,
 * deleted, synced; it never ends on its own. */
export function watchList(query, handlers) {
  return stream(`${BASE}/events?${query}`, handlers, () => false);
}
