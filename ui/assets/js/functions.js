// The functions page: the caller's functions with their calls per state,
// the warm containers kept for each (when the agent reports them) and the
// caller's quota, paged by name (50 at a time) with a name-prefix filter.
import { live, pager } from './status.js';
import { el, table, fnLink, replace, pageButtons } from './dom.js';

const PAGE = 50;

export function functionsPage(view, signal) {
  const quota = el('p', { id: 'quota', class: 'muted' }, 'quota: …');
  const filter = el('input', { id: 'fn-filter', type: 'search', placeholder: 'name prefix' });
  const list = el('div', { id: 'functions' });
  const more = el('div', { class: 'toolbar' });
  replace(view, el('h1', {}, 'Functions'), quota, el('div', { class: 'toolbar' }, el('label', {}, 'Filter ', filter)), list, more);

  live('/v1/queue', signal, (queue) => {
    const me = document.getElementById('user');
    const q = queue.find((u) => me && u.user === me.textContent) || queue[0];
    if (q) replace(quota, `quota ${q.quota} running at once — now ${q.running} running, ${q.pending} queued`);
  });

  const show = pager(signal, (after) => {
    const q = new URLSearchParams({ stats: 'true', limit: String(PAGE + 1) });
    if (filter.value) q.set('name', filter.value);
    if (after) q.set('after', after);
    return '/v1/functions?' + q;
  }, (fns, after) => {
    const page = fns.slice(0, PAGE);
    const st = (f, k) => (f.stats ? f.stats[k] : '');
    replace(list, table([
      ['Name', (f) => fnLink(f.name)],
      ['Image', (f) => f.image],
      ['Size', (f) => f.size],
      ['Pending', (f) => st(f, 'pending'), 'num'],
      ['Running', (f) => st(f, 'running'), 'num'],
      ['Finished', (f) => st(f, 'finished'), 'num'],
      ['Failed', (f) => st(f, 'failed'), 'num'],
      ['Canceled', (f) => st(f, 'canceled'), 'num'],
      // Warm containers: shown when the agent reports them (--warm).
      ['Warm', (f) => (f.warm === undefined ? '—' : String(f.warm)), 'num'],
    ], page, (f) => ({ dataset: { fn: f.name } })));
    replace(more, pageButtons(after, fns.length > PAGE, show, () => page[page.length - 1].name, 'First page', 'Next page'));
  });
  let timer = null;
  filter.addEventListener('input', () => { clearTimeout(timer); timer = setTimeout(() => show(''), 300); });
  show('');
}
