package server_test

import (
	"bytes"
	"net/http"
	"strings"
	"testing"

	"github.com/hyperfunc/hyperfunc/api"
	"github.com/hyperfunc/hyperfunc/server/servertest"
)

func TestHTTPBadInputIsA4xxJSONError(t *testing.T) {
	c := servertest.NewCluster(t, 1, servertest.Options{})
	u := c.URL(0)
	createFn(t, c.Client(0), "taken", "cat")
	long := strings.Repeat("a", 64)
	cases := []struct {
		name, method, path, body string
		want                     int
	}{
		{"empty name", "POST", "/v1/functions", `{"name":"","image":"busybox"}`, 400},
		{"upper case", "POST", "/v1/functions", `{"name":"Hello","image":"busybox"}`, 400},
		{"leading dash", "POST", "/v1/functions", `{"name":"-a","image":"busybox"}`, 400},
		{"trailing dash", "POST", "/v1/functions", `{"name":"a-","image":"busybox"}`, 400},
		{"underscore", "POST", "/v1/functions", `{"name":"a_b","image":"busybox"}`, 400},
		{"64 chars", "POST", "/v1/functions", `{"name":"` + long + `","image":"busybox"}`, 400},
		{"unicode", "POST", "/v1/functions", `{"name":"café","image":"busybox"}`, 400},
		{"duplicate", "POST", "/v1/functions", `{"name":"taken","image":"busybox"}`, 409},
		{"unknown field", "POST", "/v1/functions", `{"name":"x","image":"busybox","bogus":1}`, 400},
		{"wrong type", "POST", "/v1/functions", `{"name":5,"image":"busybox"}`, 400},
		{"empty body", "POST", "/v1/functions", ``, 400},
		{"not JSON", "POST", "/v1/functions", `name=x`, 400},
		{"two objects", "POST", "/v1/functions", `{"name":"x","image":"busybox"} {}`, 400},
		{"trailing brace", "POST", "/v1/functions", `{"name":"x","image":"busybox"}}`, 400},
		{"trailing bracket", "POST", "/v1/functions", `{"name":"x","image":"busybox"}]`, 400},
		{"no image", "POST", "/v1/functions", `{"name":"x"}`, 400},
		{"image with space", "POST", "/v1/functions", `{"name":"x","image":"busy box"}`, 400},
		{"bad size", "POST", "/v1/functions", `{"name":"x","image":"busybox","size":"xxl"}`, 400},
		{"negative timeout", "POST", "/v1/functions", `{"name":"x","image":"busybox","timeout":-1}`, 400},
		{"env key", "POST", "/v1/functions", `{"name":"x","image":"busybox","env":{"A=B":"c"}}`, 400},
		{"env key digit", "POST", "/v1/functions", `{"name":"x","image":"busybox","env":{"1A":"c"}}`, 400},
		{"env NUL", "POST", "/v1/functions", `{"name":"x","image":"busybox","env":{"A":"\u0000"}}`, 400},
		{"command NUL", "POST", "/v1/functions", `{"name":"x","image":"busybox","command":["a\u0000"]}`, 400},
		{"update unknown field", "POST", "/v1/functions/taken", `{"imagex":"y"}`, 400},
		{"update bad image", "POST", "/v1/functions/taken", `{"image":""}`, 400},
		{"update bad env", "POST", "/v1/functions/taken", `{"env":{"a b":"c"}}`, 400},
		{"update unknown fn", "POST", "/v1/functions/nope", `{}`, 404},
		{"invalid name in path", "GET", "/v1/functions/Bad_Name", ``, 400},
		{"get unknown", "GET", "/v1/functions/nope", ``, 404},
		{"call unknown", "POST", "/v1/functions/nope/call", `x`, 404},
		{"bad index", "GET", "/v1/functions/taken?index=abc", ``, 400},
		{"bad wait", "GET", "/v1/functions/taken?index=1&wait=forever", ``, 400},
		{"bad tail", "GET", "/v1/functions/taken/logs?tail=-1", ``, 400},
		{"bad format", "GET", "/v1/functions/taken/logs?format=xml", ``, 400},
		{"calls without function", "GET", "/v1/calls", ``, 400},
		{"unknown call", "GET", "/v1/calls/nope", ``, 404},
		{"cancel unknown call", "POST", "/v1/calls/nope/cancel", ``, 404},
		{"quota too big", "PUT", "/v1/users/default/quota", `{"quota":100001}`, 400},
		{"quota negative", "PUT", "/v1/users/default/quota", `{"quota":-1}`, 400},
		{"user bad name", "POST", "/v1/users", `{"name":"Bob!"}`, 400},
		{"pull bad image", "POST", "/v1/images/pull", `{"image":""}`, 400},
		{"remove peer without id", "DELETE", "/v1/operator/raft/peer", ``, 400},
		{"no such endpoint", "GET", "/v1/nothing", ``, 404},
		{"method not allowed", "PATCH", "/v1/functions", ``, 405},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var body any
			if tc.body != "" {
				body = tc.body
			}
			do(t, tc.method, u+tc.path, "", body).want(t, tc.want).errorBody(t)
		})
	}
	fs, _, err := c.Client(0).Functions().List(ctx(t), nil, nil)
	if err != nil || len(fs) != 1 {
		t.Fatalf("bad requests changed the state: %d functions (%v)", len(fs), err)
	}
	if n := len(c.Engine.StartOrder()); n != 0 {
		t.Fatalf("bad requests started %d calls", n)
	}
}

// padJSON builds a create body of exactly n bytes, padded with whitespace
// inside the object (the decoder must read all of it).
func padJSON(name string, n int) []byte {
	head := `{"name":"` + name + `",`
	tail := `"image":"busybox"}`
	return []byte(head + strings.Repeat(" ", n-len(head)-len(tail)) + tail)
}

func TestHTTPBodyLimits(t *testing.T) {
	c := servertest.NewCluster(t, 1, servertest.Options{})
	u := c.URL(0)
	const limit = 1 << 20
	do(t, "POST", u+"/v1/functions", "", padJSON("at-limit", limit)).want(t, 201)
	r := do(t, "POST", u+"/v1/functions", "", padJSON("past-limit", limit+1)).want(t, 413)
	if msg := r.errorBody(t); !strings.Contains(msg, "exceeds") {
		t.Fatalf("413 message %q", msg)
	}
	// Whitespace after the object counts too.
	trailing := append([]byte(`{"name":"trailing","image":"busybox"}`), bytes.Repeat([]byte(" "), limit)...)
	do(t, "POST", u+"/v1/functions", "", trailing).want(t, 413).errorBody(t)
	if _, _, err := c.Client(0).Functions().Info(ctx(t), "past-limit", nil); api.StatusCode(err) != 404 {
		t.Fatalf("the refused function exists: %v", err)
	}

	// Call stdin: 1 MiB is fine, one byte more is 413 and nothing queued.
	stdin := bytes.Repeat([]byte{0xff, 0x00, 'a', '\n'}, limit/4)
	r = do(t, "POST", u+"/v1/functions/at-limit/call?sync=true", "", stdin).want(t, 200)
	if !bytes.Equal(r.Body, stdin) {
		t.Fatalf("1 MiB stdin came back as %d bytes", len(r.Body))
	}
	r = do(t, "POST", u+"/v1/functions/at-limit/call", "", append(stdin, 'x')).want(t, 413)
	if msg := r.errorBody(t); !strings.Contains(msg, "stdin exceeds 1MiB") {
		t.Fatalf("413 message %q", msg)
	}
	st, err := c.Client(0).Functions().Status(ctx(t), "at-limit")
	if err != nil || st.Finished != 1 || st.Pending+st.Running != 0 {
		t.Fatalf("status %+v (%v): the refused call was queued", st, err)
	}
	// The same limit on the per-function address.
	f, err := c.Client(0).Functions().Update(ctx(t), "at-limit", &api.FunctionUpdate{Refresh: true})
	if err != nil {
		t.Fatal(err)
	}
	pub := strings.Replace(f.Address, "http://"+c.Node(0).HTTPAddr, u, 1)
	do(t, "POST", pub, "", append(stdin, 'x')).want(t, 413).errorBody(t)
	do(t, "POST", pub, "", stdin).want(t, http.StatusAccepted)
}
