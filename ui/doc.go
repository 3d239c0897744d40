// Package ui is the web UI every agent serves under /ui: static HTML, CSS
// and vanilla JavaScript embedded in the binary (nothing is loaded from
// elsewhere), reading the same HTTP API as the CLI with blocking queries.
//
// The UI holds no data access of its own: its pages call /v1/... and see
// exactly what the session's token sees. With ACLs on, POST /ui/login
// checks a token against the API and keeps it in an HttpOnly,
// SameSite=Strict cookie scoped to /v1/ (api.UICookie), which the API
// accepts only beside the api.HeaderUI header (CSRF guard).
//
// Everything a function produced (output, log lines, failure messages) is
// untrusted: the scripts insert it as text (textContent), never as markup,
// and a strict Content-Security-Policy (no inline script, no other origin,
// no framing) backs that up.
package ui
