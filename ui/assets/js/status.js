// The error line under the header: what the last failed request said.
const box = () => document.getElementById('error');

export function showError(e) {
  box().textContent = String(e && e.message ? e.message : e);
  box().hidden = false;
}

export function clearError() { box().hidden = true; }

import { watch } from './api.js';

// live renders path's answer now and at each change (api.watch), showing
// request errors in the error line until the next success.
export function live(path, signal, render) {
  watch(path, signal, (data) => { clearError(); render(data); }, showError);
}

// pager shows a paged list live, one watch at a time: show(cursor) ends the
// watch of the page shown and watches pathOf(cursor) ('' is the first
// page); render gets the answer and the cursor it belongs to.
export function pager(signal, pathOf, render) {
  let ctl = null;
  signal.addEventListener('abort', () => { if (ctl) ctl.abort(); }, { once: true });
  return function show(cursor) {
    if (ctl) ctl.abort();
    ctl = new AbortController();
    live(pathOf(cursor), ctl.signal, (data) => render(data, cursor));
  };
}
