// The router and the session: one page at a time, chosen by the URL's
// hash (#/functions, #/fn/<name>, #/queue, #/running, #/failures,
// #/cluster). Leaving a page aborts its watches and streams.
import { api, getJSON, hooks } from './api.js';
import { el, replace } from './dom.js';
import { functionsPage } from './functions.js';
import { functionPage } from './function.js';
import { queuePage, runningPage, failuresPage } from './lists.js';
import { clusterPage } from './cluster.js';
import { showError, clearError } from './status.js';

const view = document.getElementById('view');
let current = null; // AbortController of the page shown

const pages = [
  [/^#\/fn\/([^/]+)$/, (m, s) => functionPage(view, decodeURIComponent(m[1]), s)],
  [/^#\/queue$/, (m, s) => queuePage(view, s)],
  [/^#\/running$/, (m, s) => runningPage(view, s)],
  [/^#\/failures$/, (m, s) => failuresPage(view, s)],
  [/^#\/cluster$/, (m, s) => clusterPage(view, s)],
  [/^/, (m, s) => functionsPage(view, s)],
];

function route() {
  if (current) current.abort();
  current = new AbortController();
  clearError();
  const hash = location.hash || '#/functions';
  for (const a of document.querySelectorAll('nav a')) {
    a.classList.toggle('active', hash.startsWith(a.getAttribute('href')));
  }
  for (const [re, page] of pages) {
    const m = hash.match(re);
    if (m) { page(m, current.signal); return; }
  }
}

function showLogin() {
  if (current) current.abort();
  current = null;
  document.getElementById('nav').hidden = true;
  document.getElementById('logout').hidden = true;
  document.getElementById('who').textContent = '';
  const form = document.getElementById('login-template').content.firstElementChild.cloneNode(true);
  replace(view, form);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const msg = form.querySelector('#login-error');
    try {
      const r = await fetch('/ui/login', {
        method: 'POST', credentials: 'same-origin',
        headers: { 'Content-Type': 'application/json', 'X-Hyper-UI': '1' },
        body: JSON.stringify({ token: form.querySelector('#token').value }),
      });
      if (!r.ok) {
        let text = r.status + ' ' + r.statusText;
        try { text = (await r.json()).error || text; } catch (e) { /* keep */ }
        msg.textContent = 'Login failed: ' + text;
        msg.hidden = false;
        return;
      }
      start();
    } catch (e) {
      msg.textContent = 'Login failed: ' + e.message;
      msg.hidden = false;
    }
  });
  form.querySelector('#token').focus();
}

// start asks the API who the session is: a 401 shows the login form
// (hooks.onUnauthorized), anything else shows the pages.
async function start() {
  try {
    const self = await getJSON('/v1/tokens/self');
    document.getElementById('nav').hidden = false;
    const who = document.getElementById('who');
    replace(who, 'user ', el('strong', { id: 'user' }, self.user || ''));
    document.getElementById('logout').hidden = !self.accessor_id;
    route();
  } catch (e) {
    if (e.status !== 401) {
      showError(e);
      setTimeout(start, 3000); // agent not ready yet: one request per 3 s
    }
  }
}

hooks.onUnauthorized = showLogin;
window.addEventListener('hashchange', () => { if (current) route(); });
document.getElementById('logout').addEventListener('click', async () => {
  await api('/ui/logout', { method: 'POST' }).catch(showError);
  showLogin();
});
start();
