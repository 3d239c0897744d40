// The cross-function pages: each user's queue against their quota, the
// calls running now, and the recent failures with their reasons.
import { live, pager } from './status.js';
import { el, table, replace, bytes, pageButtons } from './dom.js';
import { callTable } from './function.js';

const PAGE = 50;

export function queuePage(view, signal) {
  const body = el('div', { id: 'queue' });
  replace(view, el('h1', {}, 'Queue'),
    el('p', { class: 'muted' }, 'Calls queued and running per user; a user runs at most its quota at once, the rest wait in order.'), body);
  live('/v1/queue', signal, (list) => {
    replace(body, table([
      ['User', (u) => u.user],
      ['Quota', (u) => String(u.quota), 'num'],
      ['Running', (u) => String(u.running), 'num'],
      ['Use', (u) => useBar(u)],
      ['Queued', (u) => String(u.pending), 'num'],
      ['Stdin held', (u) => bytes(u.stdin_bytes), 'num'],
    ], list, (u) => ({ dataset: { user: u.user } })));
  });
}

// useBar is running/quota as a bar; sized through the CSSOM, which the
// CSP allows (a style attribute it would not).
function useBar(u) {
  const bar = el('span', { class: 'bar' + (u.running >= u.quota ? ' over' : '') });
  bar.style.width = Math.min(100, u.quota ? (100 * u.running) / u.quota : 0) + 'px';
  return bar;
}

// pagedCalls shows the caller's calls in some states across functions,
// newest first, with an Older button (a cursor, not an offset).
function pagedCalls(view, signal, title, intro, states, id) {
  const body = el('div', { id });
  const more = el('div', { class: 'toolbar' });
  replace(view, el('h1', {}, title), el('p', { class: 'muted' }, intro), body, more);
  const show = pager(signal, (before) => {
    const q = new URLSearchParams({ order: 'desc', limit: String(PAGE + 1) });
    for (const s of states) q.append('state', s);
    if (before) q.set('before', before);
    return '/v1/calls?' + q;
  }, (list, before) => {
    const page = list.slice(0, PAGE);
    replace(body, callTable(page, true));
    replace(more, pageButtons(before, list.length > PAGE, show, () => page[page.length - 1].id, 'Newest', 'Older'));
  });
  show('');
}

export function runningPage(view, signal) {
  pagedCalls(view, signal, 'Running calls', 'Calls started and not yet ended, across your functions.', ['RUNNING'], 'running');
}

export function failuresPage(view, signal) {
  pagedCalls(view, signal, 'Recent failures', 'Failed calls across your functions, newest first, with the reason and the message the platform recorded.', ['FAILED'], 'failures');
}
