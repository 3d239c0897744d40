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
