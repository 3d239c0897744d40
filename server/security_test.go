package server_test

import (
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/hyperfunc/hyperfunc/api"
	"github.com/hyperfunc/hyperfunc/server/servertest"
)

// Who a request of the security table acts as.
const (
	asNone  = iota // no token
	asWrong        // a token that does not exist
	asOther        // bob, a user who owns none of the addressed things
	asRO           // a read-only token of alice, who owns them
)

// routeRule is what each identity gets from one route: the exact status.
type routeRule struct {
	codes [4]int
	body  string // request body (JSON) for writes
	query string
}

var (
	open      = [4]int{200, 200, 200, 200}
	clusterOK = [4]int{403, 403, 403, 403} // internal: the cluster key, never a token
	adminOnly = [4]int{401, 403, 403, 403}
	aliceRead = [4]int{401, 403, 404, 200} // alice's things: bob sees "not found"
	aliceWrit = [4]int{401, 403, 404, 403}
	nobody404 = [4]int{404, 404, 404, 404} // secret in the path is the credential
)

// routeRules covers every route the router registers; a route missing here
// fails the test, so a new route cannot skip this check.
var routeRules = map[string]routeRule{
	"GET /v1/status/leader":                  {codes: open},
	"GET /v1/status/peers":                   {codes: open},
	"GET /v1/agent/health":                   {codes: open},
	"GET /metrics":                           {codes: adminOnly},
	"GET /v1/operator/raft/configuration":    {codes: adminOnly},
	"GET /v1/operator/state":                 {codes: adminOnly},
	"DELETE /v1/operator/raft/peer":          {codes: adminOnly, query: "id=x"},
	"GET /v1/agent/self":                     {codes: clusterOK},
	"POST /v1/internal/join":                 {codes: clusterOK, body: `{"id":"evil","raft_addr":"127.0.0.1:1","http_addr":"127.0.0.1:2"}`},
	"POST /v1/internal/member":               {codes: clusterOK, body: `{"id":"evil","raft_addr":"127.0.0.1:1","http_addr":"127.0.0.1:2"}`},
	"POST /v1/internal/leave":                {codes: clusterOK, body: `{"id":"x","raft_addr":"127.0.0.1:1","http_addr":"127.0.0.1:2"}`},
	"POST /v1/internal/enqueue":              {codes: clusterOK, body: `{"calls":[],"creds":[]}`},
	"POST /v1/functions":                     {codes: [4]int{401, 403, 201, 403}, body: `{"name":"bobs","image":"busybox"}`},
	"GET /v1/functions":                      {codes: [4]int{401, 403, 200, 200}},
	"GET /v1/functions/:name":                {codes: aliceRead},
	"POST /v1/functions/:name":               {codes: aliceWrit, body: `{"refresh":true}`},
	"DELETE /v1/functions/:name":             {codes: aliceWrit},
	"GET /v1/functions/:name/status":         {codes: aliceRead},
	"POST /v1/functions/:name/call":          {codes: aliceWrit, body: `stdin`},
	"GET /v1/functions/:name/logs":           {codes: aliceRead},
	"GET /v1/calls":                          {codes: [4]int{401, 403, 200, 200}, query: "function=secretive"},
	"GET /v1/calls/:id":                      {codes: aliceRead},
	"GET /v1/calls/:id/output":               {codes: [4]int{401, 403, 404, 201}},
	"POST /v1/calls/:id/cancel":              {codes: aliceWrit},
	"POST /v1/users":                         {codes: adminOnly, body: `{"name":"mallory","quota":100}`},
	"GET /v1/users":                          {codes: adminOnly},
	"GET /v1/users/:name":                    {codes: [4]int{401, 403, 403, 200}},
	"PUT /v1/users/:name/quota":              {codes: adminOnly, body: `{"quota":1000}`},
	"DELETE /v1/users/:name":                 {codes: adminOnly},
	"POST /v1/tokens":                        {codes: adminOnly, body: `{"user":"alice"}`},
	"GET /v1/tokens":                         {codes: adminOnly},
	"GET /v1/tokens/self":                    {codes: [4]int{401, 403, 200, 200}},
	"DELETE /v1/tokens/:accessor":            {codes: adminOnly},
	"POST /v1/images/pull":                   {codes: [4]int{401, 403, 204, 403}, body: `{"image":"busybox"}`},
	"POST /call/:name/:secret":               {codes: nobody404, body: `x`},
	"POST /call/:name/:secret/sync":          {codes: nobody404, body: `x`},
	"GET /output/:name/:secret/:callid":      {codes: nobody404},
	"GET /output/:name/:secret/:callid/wait": {codes: nobody404},
	"GET /logs/:name/:secret":                {codes: nobody404},
	"GET /status/:name/:secret":              {codes: nobody404},
	"GET /v1/artifacts/hf-shim.tar.gz":       {codes: nobody404},
	"GET /v1/artifacts/stdin/:callid":        {codes: nobody404, query: "key=guess"},
	"GET /v1/queue":                          {codes: [4]int{401, 403, 200, 200}},
	// The UI's files are public (they hold no data); its login and logout
	// need the UI header, so a cross-site form cannot use them.
	"GET /ui":         {codes: open},
	"GET /ui/*path":   {codes: open},
	"HEAD /ui/*path":  {codes: open},
	"POST /ui/login":  {codes: [4]int{403, 403, 403, 403}, body: `{"token":"x"}`},
	"POST /ui/logout": {codes: [4]int{403, 403, 403, 403}},
}

// TestSecurityEveryRoute sends every route of the router as no one, with a
// wrong token, as another user and with a read-only token, and checks the
// status of each, that every error is JSON, and that alice's things did
// not change.
func TestSecurityEveryRoute(t *testing.T) {
	c := servertest.NewCluster(t, 1, servertest.Options{ACL: true, Configure: withQuota(1, 0)})
	alice, _ := newUser(t, c, 0, "alice", 0, false)
	_, bobTok := newUser(t, c, 0, "bob", 0, false)
	_, roTok := newUser(t, c, 0, "alice", 0, true)
	fn := createFn(t, alice, "secretive", "sleep")
	callID := call(t, alice, "secretive", "private stdin")
	waitRunning(t, c.Engine, callID)
	waitState(t, alice, callID, api.StateRunning) // recorded: the check at the end compares with it
	before, _, err := alice.Functions().Info(ctx(t), "secretive", nil)
	if err != nil {
		t.Fatal(err)
	}
	toks, err := c.Client(0).Tokens().List(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	var accessor string
	for _, tk := range toks {
		if tk.User == "alice" && !tk.ReadOnly {
			accessor = tk.AccessorID
		}
	}
	params := strings.NewReplacer(":name", "secretive", ":id", callID, ":callid", callID,
		":accessor", accessor, ":secret", "0123456789abcdef0123456789abcdef", "*path", "js/main.js")
	tokens := [4]string{"", "no-such-token", bobTok, roTok}
	names := [4]string{"no token", "wrong token", "another user", "read-only"}

	routes := c.Server(0).Routes()
	if len(routes) < 30 {
		t.Fatalf("only %d routes listed", len(routes))
	}
	seen := map[string]bool{}
	for _, rt := range routes {
		key := rt.Method + " " + rt.Path
		seen[key] = true
		rule, ok := routeRules[key]
		if !ok {
			t.Errorf("route %s has no rule in the security table: add one", key)
			continue
		}
		path := rt.Path
		if strings.HasPrefix(rt.Path, "/v1/users/") {
			path = strings.Replace(path, ":name", "alice", 1)
		}
		url := c.URL(0) + params.Replace(path)
		if rule.query != "" {
			url += "?" + rule.query
		}
		for who := range 4 {
			var body any
			if rule.body != "" {
				body = rule.body
			}
			r := do(t, rt.Method, url, tokens[who], body)
			if r.Code != rule.codes[who] {
				t.Errorf("%s as %s: HTTP %d, want %d: %s", key, names[who], r.Code, rule.codes[who], r.Body)
				continue
			}
			if r.Code >= 400 {
				r.errorBody(t)
			}
			if r.Code < 300 && who == asOther && strings.Contains(string(r.Body), "secretive") {
				t.Errorf("%s as another user leaks alice's function: %s", key, r.Body)
			}
		}
	}
	t.Logf("%d routes checked as 4 identities each", len(routes))
	for key := range routeRules {
		if !seen[key] {
			t.Errorf("rule for %s, which the router does not serve", key)
		}
	}
	// Nothing of alice's changed.
	after, _, err := alice.Functions().Info(ctx(t), "secretive", nil)
	if err != nil || after.ModifyIndex != before.ModifyIndex {
		t.Fatalf("alice's function changed: %+v (%v)", after, err)
	}
	if got, _, _ := alice.Calls().Info(ctx(t), callID, nil); got.State != api.StateRunning {
		t.Fatalf("alice's call is %s", got.State)
	}
	if u, err := c.Client(0).Users().Info(ctx(t), "alice"); err != nil || u.Quota != 0 {
		t.Fatalf("alice's quota changed: %+v (%v)", u, err)
	}
	if _, err := c.Client(0).Users().Info(ctx(t), "mallory"); api.StatusCode(err) != 404 {
		t.Fatalf("a non-admin created a user: %v", err)
	}
	peers, _ := c.Client(0).Operator().RaftPeers(ctx(t))
	if len(peers) != 1 {
		t.Fatalf("raft configuration changed: %v", peers)
	}
	_ = fn
}

// TestSecurityReadOnlyAndOtherUsers: the management API's errors for a
// read-only token and for another user's function, each as JSON.
func TestSecurityTokens(t *testing.T) {
	c := servertest.NewCluster(t, 1, servertest.Options{ACL: true})
	alice, aliceTok := newUser(t, c, 0, "alice", 0, false)
	_, roTok := newUser(t, c, 0, "alice", 0, true)
	_, bobTok := newUser(t, c, 0, "bob", 0, false)
	createFn(t, alice, "mine", "cat")
	u := c.URL(0) + "/v1/functions"

	if msg := do(t, "GET", u, "", nil).want(t, 401).errorBody(t); !strings.Contains(msg, "token") {
		t.Errorf("401 message %q", msg)
	}
	do(t, "GET", u, "wrong", nil).want(t, 403).errorBody(t)
	do(t, "GET", u, "", nil, "X-Hyper-Token", aliceTok).want(t, 200)
	do(t, "GET", u, "", nil, "Authorization", "bearer "+aliceTok).want(t, 200)
	// Read-only: reads work, every write is refused.
	do(t, "GET", u+"/mine", roTok, nil).want(t, 200)
	if msg := do(t, "POST", u, roTok, `{"name":"ro","image":"busybox"}`).want(t, 403).errorBody(t); !strings.Contains(msg, "read-only") {
		t.Errorf("403 message %q", msg)
	}
	do(t, "POST", u+"/mine/call", roTok, "x").want(t, 403).errorBody(t)
	do(t, "DELETE", u+"/mine", roTok, nil).want(t, 403).errorBody(t)
	// Bob: alice's function does not exist for him; his delete changes nothing.
	do(t, "GET", u+"/mine", bobTok, nil).want(t, 404).errorBody(t)
	do(t, "DELETE", u+"/mine", bobTok, nil).want(t, 404).errorBody(t)
	do(t, "POST", u+"/mine/call", bobTok, "x").want(t, 404).errorBody(t)
	do(t, "GET", u+"/mine", aliceTok, nil).want(t, 200)
	// A deleted token stops working at once.
	toks, _ := c.Client(0).Tokens().List(ctx(t))
	for _, tk := range toks {
		if tk.User == "bob" {
			if err := c.Client(0).Tokens().Delete(ctx(t), tk.AccessorID); err != nil {
				t.Fatal(err)
			}
		}
	}
	do(t, "GET", u, bobTok, nil).want(t, 403).errorBody(t)
}

// TestSecretsNeverLogged drives the per-function addresses (right and
// wrong secrets, through a follower that forwards, with a leader that
// dies) with trace logging on, and finds no secret in any server's log.
func TestSecretsNeverLogged(t *testing.T) {
	c := servertest.NewCluster(t, 3, servertest.Options{LogLevel: hclog.Trace})
	leader := c.LeaderIndex()
	f := createFn(t, c.Client(leader), "hidden", "cat")
	secret := f.Address[strings.LastIndex(f.Address, "/")+1:]
	if len(secret) < 16 {
		t.Fatalf("address %q has no secret", f.Address)
	}
	follower := c.FollowerIndexes()[0]
	for _, i := range []int{leader, follower} {
		base := c.URL(i)
		r := do(t, "POST", base+"/call/hidden/"+secret+"/sync", "", "hi").want(t, 200)
		id := r.Header.Get(api.HeaderCallID)
		do(t, "GET", base+"/output/hidden/"+secret+"/"+id, "", nil).want(t, 200)
		do(t, "GET", base+"/output/hidden/"+secret+"/"+id+"/wait", "", nil).want(t, 200)
		do(t, "GET", base+"/status/hidden/"+secret, "", nil).want(t, 200)
		do(t, "GET", base+"/logs/hidden/"+secret, "", nil).want(t, 200)
		do(t, "POST", base+"/call/hidden/"+secret+"x", "", "hi").want(t, 404)
		do(t, "GET", base+"/output/hidden/"+secret+"/nope", "", nil).want(t, 404)
	}
	// Rotate the secret; the old one stops working.
	nf, err := c.Client(leader).Functions().Update(ctx(t), "hidden", &api.FunctionUpdate{Refresh: true})
	if err != nil {
		t.Fatal(err)
	}
	newSecret := nf.Address[strings.LastIndex(nf.Address, "/")+1:]
	do(t, "POST", c.URL(follower)+"/call/hidden/"+secret, "", "hi").want(t, 404)
	// The leader dies: the follower's forward fails with the secret in
	// the proxied URL.
	c.Kill(leader)
	r := do(t, "POST", c.URL(follower)+"/call/hidden/"+newSecret, "", "hi")
	if r.Code >= 500 && strings.Contains(string(r.Body), newSecret) {
		t.Errorf("HTTP %d answer echoes the secret: %s", r.Code, r.Body)
	}
	logs := c.Logs()
	if !strings.Contains(logs, "/call/:name/:secret") {
		t.Fatalf("trace logs do not show the requests; the test proves nothing:\n%s", tail(logs, 20))
	}
	for _, s := range []string{secret, newSecret} {
		if strings.Contains(logs, s) {
			for _, line := range strings.Split(logs, "\n") {
				if strings.Contains(line, s) {
					t.Errorf("secret in the log: %s", line)
				}
			}
		}
	}
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// TestCallHeadersBecomeSafeEnv: request headers reach the function as
// HTTP_* variables with names mapped to [A-Z0-9_]; credentials and
// hop-by-hop headers do not; a caller cannot override the function's env;
// header names or values that would inject are refused by the HTTP server.
func TestCallHeadersBecomeSafeEnv(t *testing.T) {
	c := servertest.NewCluster(t, 1, servertest.Options{ACL: true})
	alice, aliceTok := newUser(t, c, 0, "alice", 0, false)
	if _, err := alice.Functions().Create(ctx(t), &api.FunctionSpec{
		Name: "env", Image: "busybox", Command: []string{"env"}, Env: map[string]string{"HTTP_X_MODE": "owner", "MODE": "owner"},
	}); err != nil {
		t.Fatal(err)
	}
	r := do(t, "POST", c.URL(0)+"/v1/functions/env/call?sync=true", aliceTok, "x",
		"Content-Type", "text/plain", "X-Mode", "caller", "X-Dots.And~Tilde", "v", "Cookie", "session=1",
		"X-Hyper-Token", aliceTok, "Mode", "caller").want(t, 200)
	env := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(r.Body)), "\n") {
		k, v, _ := strings.Cut(line, "=")
		env[k] = v
	}
	want := map[string]string{
		"HTTP_CONTENT_TYPE": "text/plain", "HTTP_X_MODE": "owner", "MODE": "owner",
		"HTTP_X_DOTS_AND_TILDE": "v", "HYPER_FUNC_NAME": "env", "HTTP_MODE": "caller",
	}
	for k, v := range want {
		if env[k] != v {
			t.Errorf("%s=%q, want %q (env %v)", k, env[k], v, env)
		}
	}
	for k, v := range env {
		if strings.Contains(v, aliceTok) || k == "HTTP_AUTHORIZATION" || k == "HTTP_X_HYPER_TOKEN" || k == "HTTP_COOKIE" {
			t.Errorf("credential reached the function: %s=%s", k, v)
		}
		for _, ch := range k {
			if !(ch == '_' || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9')) {
				t.Errorf("env name %q has %q", k, ch)
			}
		}
	}
	// Raw requests a Go client would refuse to send: a header name with
	// '=' and a value with a newline never reach the handler.
	for _, raw := range []string{
		"X-Evil=1: v\r\n",
		"X-Evil: a\nLD_PRELOAD=/tmp/x\r\n",
		"X-Evil: a\x00b\r\n",
	} {
		code := rawPost(t, c.URL(0), "/v1/functions/env/call", aliceTok, raw)
		if code != 400 {
			t.Errorf("header %q: HTTP %d, want 400", raw, code)
		}
	}
	st, err := alice.Functions().Status(ctx(t), "env")
	if err != nil || st.Finished != 1 || st.Pending+st.Running != 0 {
		t.Fatalf("status %+v (%v): a refused request was queued", st, err)
	}
}
