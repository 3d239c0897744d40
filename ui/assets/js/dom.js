// DOM helpers. Text goes in as text (textContent), never as markup:
// function names, output, log lines and failure messages come from
// tenants and are hostile until proven otherwise.

// el builds an element: attrs are properties or attributes (on* are
// listeners); children are nodes or strings (as text nodes).
export function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else if (k === 'class') e.className = v;
    else if (k === 'dataset') Object.assign(e.dataset, v);
    else e.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

// table builds a table of rows: cols are [header, cell(row) -> node|string,
// class?].
export function table(cols, rows, rowAttrs) {
  return el('table', {},
    el('thead', {}, el('tr', {}, cols.map(([h, , cls]) => el('th', { class: cls }, h)))),
    el('tbody', {}, rows.length === 0
      ? el('tr', {}, el('td', { colspan: cols.length, class: 'muted' }, 'none'))
      : rows.map((r) => el('tr', rowAttrs ? rowAttrs(r) : {}, cols.map(([, cell, cls]) => el('td', { class: cls }, cell(r)))))));
}

export function fnLink(name) {
  return el('a', { href: '#/fn/' + encodeURIComponent(name) }, name);
}

export function stateCell(state) {
  return el('span', { class: 'state state-' + state }, state);
}

// when renders a time as local date and time; '' for the zero time.
export function when(t) {
  if (!t || t.startsWith('0001-')) return '';
  return new Date(t).toLocaleString();
}

// duration of a call: run time when it started, else time queued so far.
export function duration(c) {
  const from = c.started_at || c.created_at;
  if (!from) return '';
  const to = c.finished_at ? new Date(c.finished_at) : new Date();
  const s = Math.max(0, (to - new Date(from)) / 1000);
  if (s < 1) return (s * 1000).toFixed(0) + ' ms';
  if (s < 120) return s.toFixed(1) + ' s';
  if (s < 7200) return (s / 60).toFixed(1) + ' min';
  return (s / 3600).toFixed(1) + ' h';
}

export function bytes(n) {
  if (n < 1024) return n + ' B';
  if (n < 1 << 20) return (n / 1024).toFixed(1) + ' KiB';
  if (n < 1 << 30) return (n / (1 << 20)).toFixed(1) + ' MiB';
  return (n / (1 << 30)).toFixed(1) + ' GiB';
}

// replace swaps the children of a node.
export function replace(node, ...children) {
  node.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined));
}

// pageButtons are a list's "back to the first page" (when on a later one)
// and "next page" (when there is more) buttons; next() names the cursor of
// the next page, show(cursor) shows a page.
export function pageButtons(cursor, hasMore, show, next, firstLabel, nextLabel) {
  return [
    cursor ? el('button', { type: 'button', class: 'first-page', onclick: () => show('') }, firstLabel) : null,
    hasMore ? el('button', { type: 'button', class: 'next-page', onclick: () => show(next()) }, nextLabel) : null,
  ];
}
