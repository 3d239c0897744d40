package server_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/hyperfunc/hyperfunc/api"
	"github.com/hyperfunc/hyperfunc/server/servertest"
)

// The web UI's files come with a strict CSP; its login keeps the token in
// an HttpOnly, SameSite=Strict cookie scoped to the API, which the API
// takes only beside the UI's header, as the token's own user.
func TestUISession(t *testing.T) {
	c := servertest.NewCluster(t, 1, servertest.Options{ACL: true})
	c.WaitForLeader()
	alice, aliceTok := newUser(t, c, 0, "alice", 0, false)
	_, bobTok := newUser(t, c, 0, "bob", 0, false)
	createFn(t, alice, "mine", "echo", "hi")
	url := c.URL(0)

	r := do(t, http.MethodGet, url+"/ui/", "", nil).want(t, 200)
	csp := r.Header.Get("Content-Security-Policy")
	for _, want := range []string{"default-src 'self'", "script-src 'self'", "frame-ancestors 'none'", "object-src 'none'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("CSP %q lacks %q", csp, want)
		}
	}
	if strings.Contains(csp, "unsafe") || r.Header.Get("X-Content-Type-Options") != "nosniff" || r.Header.Get("X-Frame-Options") != "DENY" {
		t.Errorf("UI headers: %v", r.Header)
	}
	if ct := do(t, http.MethodGet, url+"/ui/js/main.js", "", nil).want(t, 200).Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/javascript") {
		t.Errorf("main.js served as %q", ct)
	}

	login := func(body string, hdr ...string) *response {
		return do(t, http.MethodPost, url+"/ui/login", "", body, hdr...)
	}
	ui := []string{api.HeaderUI, "1"}
	login(`{"token":"`+aliceTok+`"}`).want(t, 403) // no UI header: a cross-site form
	if r := login(`{"token":"not-a-token"}`, ui...).want(t, 403); r.Header.Get("Set-Cookie") != "" {
		t.Fatalf("a refused login set a cookie: %s", r.Header.Get("Set-Cookie"))
	}
	login(`{"tok":"x"}`, ui...).want(t, 400)
	login(`{"token":"a b"}`, ui...).want(t, 400)
	r = login(`{"token":"`+aliceTok+`"}`, ui...).want(t, 200)
	var self api.Token
	if err := json.Unmarshal(r.Body, &self); err != nil || self.User != "alice" {
		t.Fatalf("login answered %s (%v)", r.Body, err)
	}
	ck := (&http.Response{Header: r.Header}).Cookies()
	if len(ck) != 1 || ck[0].Name != api.UICookie || ck[0].Value != aliceTok || !ck[0].HttpOnly ||
		ck[0].SameSite != http.SameSiteStrictMode || ck[0].Path != "/v1/" || ck[0].Secure {
		t.Fatalf("session cookie %+v: want HttpOnly, SameSite=Strict, Path=/v1/, not Secure without TLS", ck)
	}

	// Behind the TLS-terminating proxy SECURITY.md recommends, Secure.
	r = login(`{"token":"`+aliceTok+`"}`, append(ui, "X-Forwarded-Proto", "https")...).want(t, 200)
	if ck := (&http.Response{Header: r.Header}).Cookies(); len(ck) != 1 || !ck[0].Secure {
		t.Fatalf("session cookie behind a TLS proxy %+v: want Secure", ck)
	}
	// Tenant bytes are never sniffed, the public per-function routes and
	// logs included.
	if r := do(t, http.MethodGet, url+"/v1/functions/mine/logs", aliceTok, nil); r.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Fatalf("logs headers: %v", r.Header)
	}

	cookie := func(tok string) []string { return []string{"Cookie", api.UICookie + "=" + tok} }
	self2 := func(hdr ...string) *response { return do(t, http.MethodGet, url+"/v1/tokens/self", "", nil, hdr...) }
	self2(cookie(aliceTok)...).want(t, 401) // the cookie alone: what a cross-site request carries
	self2(ui...).want(t, 401)
	if r := self2(append(cookie(aliceTok), ui...)...).want(t, 200); !strings.Contains(string(r.Body), `"user":"alice"`) {
		t.Fatalf("self with the session: %s", r.Body)
	}
	bob := append(cookie(bobTok), ui...)
	do(t, http.MethodGet, url+"/v1/functions/mine", "", nil, bob...).want(t, 404)
	do(t, http.MethodGet, url+"/v1/functions/mine", "", nil, append(cookie(aliceTok), ui...)...).want(t, 200)

	// Outputs download as files, never rendered.
	id := call(t, alice, "mine", "")
	waitState(t, alice, id, api.StateFinished)
	r = do(t, http.MethodGet, url+"/v1/calls/"+id+"/output", "", nil, append(cookie(aliceTok), ui...)...).want(t, 200)
	if cd := r.Header.Get("Content-Disposition"); cd != `attachment; filename="`+id+`.out"` ||
		r.Header.Get("Content-Type") != "application/octet-stream" || r.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Fatalf("output headers: %v", r.Header)
	}

	do(t, http.MethodPost, url+"/ui/logout", "", nil).want(t, 403)
	r = do(t, http.MethodPost, url+"/ui/logout", "", nil, ui...).want(t, 204)
	if ck := (&http.Response{Header: r.Header}).Cookies(); len(ck) != 1 || ck[0].MaxAge >= 0 || ck[0].Value != "" {
		t.Fatalf("logout cookie %+v: want an expired, empty one", ck)
	}
}

// A follower forwards the UI's requests with the session cookie, and the
// leader takes it as the API would there.
func TestUISessionOnFollower(t *testing.T) {
	c := servertest.NewCluster(t, 3, servertest.Options{ACL: true})
	c.WaitForLeader()
	alice, aliceTok := newUser(t, c, c.LeaderIndex(), "alice", 0, false)
	createFn(t, alice, "mine", "echo", "hi")
	f := c.FollowerIndexes()[0]
	hdr := []string{"Cookie", api.UICookie + "=" + aliceTok, api.HeaderUI, "1"}
	do(t, http.MethodPost, c.URL(f)+"/ui/login", "", `{"token":"`+aliceTok+`"}`, api.HeaderUI, "1").want(t, 200)
	r := do(t, http.MethodGet, c.URL(f)+"/v1/functions?stats=true", "", nil, hdr...).want(t, 200)
	if !strings.Contains(string(r.Body), `"name":"mine"`) {
		t.Fatalf("alice's functions through a follower: %s", r.Body)
	}
	do(t, http.MethodGet, c.URL(f)+"/v1/functions", "", nil, hdr[:2]...).want(t, 401)
}
