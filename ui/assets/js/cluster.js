// The cluster page: this agent's health (leader, Raft applied index,
// executor), the servers of the Raft configuration (with an admin token;
// others see the voters' addresses only). Health is not a blocking query,
// so this page alone re-reads it, once every 5 s.
import { getJSON } from './api.js';
import { showError, clearError } from './status.js';
import { el, table, replace } from './dom.js';

export function clusterPage(view, signal) {
  const health = el('dl', { id: 'health', class: 'facts' });
  const servers = el('div', { id: 'servers' });
  replace(view, el('h1', {}, 'Cluster'), el('h2', {}, 'This agent'), health, el('h2', {}, 'Servers'), servers);

  const refresh = async () => {
    try {
      // 503 is a health answer too (not ready): read its body either way.
      const r = await fetch('/v1/agent/health', { headers: { 'X-Hyper-UI': '1' }, signal, cache: 'no-store' });
      const h = await r.json();
      const checks = Object.entries(h.checks || {}).map(([k, v]) =>
        [k, el('span', { class: v === 'ok' ? 'ok' : 'bad', dataset: { check: k } }, v)]);
      replace(health, [['status', el('span', { class: h.ok ? 'ok' : 'bad' }, h.ok ? 'healthy' : 'unhealthy')],
        ['leader', h.leader || 'none'], ['raft applied index', el('span', { id: 'raft-index' }, String(h.applied_index))],
        ['executor kind', h.executor], ...checks.map(([k, v]) => ['check: ' + k, v])].flatMap(([k, v]) => [el('dt', {}, k), el('dd', {}, v)]));
      try {
        const cfg = await getJSON('/v1/operator/raft/configuration', { signal });
        replace(servers, table([
          ['ID', (s) => s.id], ['Raft address', (s) => s.address], ['HTTP address', (s) => s.http_addr || ''],
          ['Role', (s) => (s.leader ? 'leader' : s.voter ? 'follower' : 'non-voter')],
        ], cfg));
      } catch (e) {
        if (e.status !== 403) throw e;
        const peers = await getJSON('/v1/status/peers', { signal });
        replace(servers, el('p', { class: 'muted' }, 'Server IDs and roles need an admin token; the voters are:'),
          table([['Raft address', (p) => p]], peers));
      }
      clearError();
    } catch (e) {
      if (!signal.aborted) showError(e);
    }
  };
  refresh();
  const t = setInterval(refresh, 5000);
  signal.addEventListener('abort', () => clearInterval(t), { once: true });
}
