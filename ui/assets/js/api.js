// The UI's only door to the agent: the same /v1 API the CLI uses. Every
// request carries X-Hyper-UI, without which the API ignores the session
// cookie (so another site cannot spend it).

export class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

// onUnauthorized is set by main.js: a 401 anywhere shows the login form.
export const hooks = { onUnauthorized: () => {} };

// api fetches path and answers the Response; a non-2xx status throws an
// ApiError carrying the API's own message.
export async function api(path, opts = {}) {
  const headers = Object.assign({ 'X-Hyper-UI': '1' }, opts.headers || {});
  const r = await fetch(path, Object.assign({}, opts, { headers, credentials: 'same-origin', cache: 'no-store' }));
  if (r.ok) return r;
  let msg = r.status + ' ' + r.statusText;
  try { const b = await r.json(); if (b && b.error) msg = b.error; } catch (e) { /* not JSON */ }
  if (r.status === 401) hooks.onUnauthorized();
  throw new ApiError(r.status, msg);
}

export async function getJSON(path, opts) {
  return (await api(path, opts)).json();
}

const sleep = (ms, signal) => new Promise((resolve) => {
  const t = setTimeout(resolve, ms);
  signal.addEventListener('abort', () => { clearTimeout(t); resolve(); }, { once: true });
});

// MIN_GAP spaces the requests of one watch (ms). Blocking-query indexes
// are table-wide, so on a busy cluster every call of anyone wakes a watch:
// without a gap each open page would fetch as often as calls change.
const MIN_GAP = 1000;

// watch calls onData with path's answer now and again each time it
// changes, through blocking queries (?index=N&wait=): one request in
// flight per watch, none while nothing changes, at most one a second,
// and a growing pause after errors, so a page never turns into a polling
// storm. It stops when signal aborts.
export function watch(path, signal, onData, onError) {
  (async () => {
    let index = 0;
    let pause = 1000;
    let last = 0;
    while (!signal.aborted) {
      const gap = last + MIN_GAP - Date.now();
      if (gap > 0) await sleep(gap, signal);
      last = Date.now();
      try {
        const sep = path.includes('?') ? '&' : '?';
        const url = index ? `${path}${sep}index=${index}&wait=60s` : path;
        const r = await api(url, { signal });
        const next = Number(r.headers.get('X-Hyper-Index')) || 0;
        const data = await r.json();
        if (signal.aborted) return;
        // A table never written has index 0; waiting for "past 0" would
        // answer at once forever, so wait for past 1 instead.
        const changed = index === 0 || next !== index;
        index = Math.max(next, 1);
        pause = 1000;
        if (changed) onData(data);
      } catch (e) {
        if (signal.aborted) return;
        if (onError) onError(e);
        await sleep(pause, signal);
        pause = Math.min(pause * 2, 30000);
      }
    }
  })();
}

// streamNDJSON reads a streaming NDJSON answer (a followed log) and calls
// onItem per object until the stream ends or signal aborts.
export async function streamNDJSON(path, signal, onItem) {
  const r = await api(path, { signal });
  const reader = r.body.getReader();
  const dec = new TextDecoder();
  let buf = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += dec.decode(value, { stream: true });
    let nl;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      if (line.trim()) onItem(JSON.parse(line));
    }
  }
}

// download fetches a URL with the session and saves it as a file: a plain
// link could not send X-Hyper-UI. The bytes never reach the page's DOM.
export async function download(path, filename) {
  const blob = await (await api(path)).blob();
  const url = URL.createObjectURL(new Blob([blob], { type: 'application/octet-stream' }));
  const a = document.createElement('a');
  a.href = url;
  a.download = filename;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60000);
}
