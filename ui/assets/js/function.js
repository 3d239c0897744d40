// A function's page: what it is, its recent calls (newest first, 50 a
// page, filter by state) updated live, each finished call's output as a
// download, and its log followed as it is written.
import { getJSON, download, streamNDJSON } from './api.js';
import { live, pager, showError } from './status.js';
import { el, table, stateCell, when, duration, bytes, replace, pageButtons } from './dom.js';

const PAGE = 50;
const MAX_LOG_LINES = 2000;

export function functionPage(view, name, signal) {
  const facts = el('dl', { class: 'facts' });
  const counts = el('p', { id: 'counts', class: 'muted' });
  const stateSel = el('select', { id: 'state-filter' },
    ['', 'PENDING', 'RUNNING', 'FINISHED', 'FAILED', 'CANCELED'].map((s) => el('option', { value: s }, s || 'all states')));
  const calls = el('div', { id: 'calls' });
  const more = el('div', { class: 'toolbar' });
  const log = el('pre', { id: 'log', class: 'log' });
  const follow = el('input', { id: 'follow', type: 'checkbox', checked: true });
  replace(view,
    el('h1', {}, 'Function ', el('span', { id: 'fn-name' }, name)), facts, counts,
    el('h2', {}, 'Recent calls'), el('div', { class: 'toolbar' }, el('label', {}, 'State ', stateSel)), calls, more,
    el('h2', {}, 'Log'), el('div', { class: 'toolbar' }, el('label', {}, follow, ' follow')), log);

  getJSON('/v1/functions/' + encodeURIComponent(name), { signal }).then((f) => {
    const cmd = [...(f.entrypoint || []), ...(f.command || [])].join(' ');
    replace(facts, [['image', f.image], ['command', cmd || '(image default)'], ['size', `${f.size} (${f.resources.cpu} MHz, ${f.resources.memory_mb} MiB)`],
      ['timeout', f.timeout ? f.timeout + ' s' : 'none'], ['warm', f.warm === undefined ? '—' : String(f.warm)],
      ['created', when(f.created_at)]].flatMap(([k, v]) => [el('dt', {}, k), el('dd', {}, v)]));
  }).catch((e) => { if (!signal.aborted) showError(e); });

  live('/v1/functions/' + encodeURIComponent(name) + '/status', signal, (s) => {
    replace(counts, `${s.pending} pending · ${s.running} running · ${s.finished} finished · ${s.failed} failed · ${s.canceled} canceled`);
  });

  const show = pager(signal, (before) => {
    const q = new URLSearchParams({ function: name, order: 'desc', limit: String(PAGE + 1) });
    if (stateSel.value) q.set('state', stateSel.value);
    if (before) q.set('before', before);
    return '/v1/calls?' + q;
  }, (list, before) => {
    const page = list.slice(0, PAGE);
    replace(calls, callTable(page));
    replace(more, pageButtons(before, list.length > PAGE, show, () => page[page.length - 1].id, 'Newest', 'Older'));
  });
  stateSel.addEventListener('change', () => show(''));
  show('');

  let logCtl = null;
  const followLog = () => {
    if (logCtl) logCtl.abort();
    if (!follow.checked) return;
    logCtl = new AbortController();
    signal.addEventListener('abort', () => logCtl.abort(), { once: true });
    log.replaceChildren();
    streamNDJSON('/v1/functions/' + encodeURIComponent(name) + '/logs?follow=true&tail=200', logCtl.signal, (ev) => {
      const cls = ev.kind === 'FAILED' ? 'stderr' : 'event';
      const line = `${ev.time} [${ev.kind}] ${ev.call_id ? ev.call_id.slice(0, 8) + ' ' : ''}${ev.text || ''}\n`;
      log.append(el('span', { class: cls }, line));
      while (log.childNodes.length > MAX_LOG_LINES) log.firstChild.remove();
      log.scrollTop = log.scrollHeight;
    }).catch((e) => { if (!logCtl.signal.aborted) showError(e); });
  };
  follow.addEventListener('change', followLog);
  followLog();
}

// callTable shows calls with their outcome; rows carry data-call=<id> and
// data-state=<state> (what the e2e tests look for).
export function callTable(list, withFunction) {
  const cols = [
    ['Call', (c) => el('code', {}, c.id)],
    ['State', (c) => stateCell(c.state)],
    ['Created', (c) => when(c.created_at)],
    ['Duration', (c) => duration(c), 'num'],
    ['Exit', (c) => (c.state === 'FINISHED' || c.state === 'FAILED' ? String(c.exit_code) : ''), 'num'],
    ['Reason', (c) => c.reason || ''],
    ['Message', (c) => c.message || '', 'msg'],
    ['Output', (c) => outputCell(c)],
  ];
  if (withFunction) cols.splice(1, 0, ['Function', (c) => el('a', { href: '#/fn/' + encodeURIComponent(c.function) }, c.function)]);
  return table(cols, list, (c) => ({ dataset: { call: c.id, state: c.state } }));
}

function outputCell(c) {
  if (c.state !== 'FINISHED') return '';
  if (c.rotated) return el('span', { class: 'muted' }, 'rotated out');
  return el('button', {
    type: 'button', class: 'download',
    onclick: () => download('/v1/calls/' + encodeURIComponent(c.id) + '/output', c.id + '.out').catch(showError),
  }, 'download (' + bytes(c.stdout_size) + ')');
}
