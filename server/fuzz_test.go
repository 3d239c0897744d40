package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/hyperfunc/hyperfunc/api"
	"github.com/hyperfunc/hyperfunc/server/servertest"
)

// serve drives the gin handler in process and checks the one rule every
// answer obeys: a client's bytes never cause a 5xx or a panic, and every
// error is a JSON {"error": ...}.
func serve(t *testing.T, h http.Handler, req *http.Request) *httptest.ResponseRecorder {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code >= 500 {
		t.Fatalf("%s %s: HTTP %d: %s", req.Method, req.URL, rec.Code, rec.Body)
	}
	if rec.Code >= 400 {
		var eb api.ErrorBody
		if err := json.Unmarshal(rec.Body.Bytes(), &eb); err != nil || eb.Error == "" {
			t.Fatalf("HTTP %d error is not JSON: %q", rec.Code, rec.Body)
		}
	}
	return rec
}

func FuzzCreateFunctionBody(f *testing.F) {
	c := servertest.NewCluster(f, 1, servertest.Options{})
	h := c.Server(0).Handler()
	for _, seed := range []string{
		`{"name":"hello","image":"busybox","command":["echo","hi"]}`,
		`{"name":"a","image":"b","env":{"A":"1"},"labels":{"k":"v"},"size":"m1","timeout":5}`,
		`{"name":"a","image":"b","entrypoint":["/bin/sh"],"workdir":"/tmp"}`,
		`{"name":"x"}`, `{}`, `[]`, `null`, `""`, `{"name":null}`, `{"env":{"":""}}`,
		`{"name":"a","image":"b"} x`, `{"name":"a","image":"b","timeout":1e400}`,
		`{"name":"a","image":"b","timeout":-9223372036854775808}`, "{\"name\":\"\xff\"}",
		`{"name":"a","image":"b","labels":{"` + strings.Repeat("k", 200) + `":"v"}}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		req := httptest.NewRequest(http.MethodPost, "/v1/functions", bytes.NewReader(body))
		rec := serve(t, h, req)
		if rec.Code == http.StatusCreated {
			var fn api.Function
			if err := json.Unmarshal(rec.Body.Bytes(), &fn); err != nil || fn.Name == "" {
				t.Fatalf("201 without a function: %q", rec.Body)
			}
			// Keep the state small and the name free for the next input.
			serve(t, h, httptest.NewRequest(http.MethodDelete, "/v1/functions/"+fn.Name, nil))
		}
	})
}

func FuzzCallHeaders(f *testing.F) {
	c := servertest.NewCluster(f, 1, servertest.Options{})
	h := c.Server(0).Handler()
	if _, err := c.Client(0).Functions().Create(context.Background(), &api.FunctionSpec{Name: "env", Image: "busybox", Command: []string{"env"}}); err != nil {
		f.Fatal(err)
	}
	f.Add("X-Mode", "fast", []byte("stdin"))
	f.Add("Content-Type", "text/plain; charset=utf-8", []byte{0, 1, 2})
	f.Add("X-A=B", "v", []byte(nil))
	f.Add("X-Evil", "a\nLD_PRELOAD=/x", []byte("x"))
	f.Add("Authorization", "Bearer secret", []byte("x"))
	f.Add("HYPER_CALL_ID", "forged", []byte("x"))
	f.Add("\xff\x00", "\x00", []byte("x"))
	f.Fuzz(func(t *testing.T, name, value string, stdin []byte) {
		req := httptest.NewRequest(http.MethodPost, "/v1/functions/env/call?sync=true", bytes.NewReader(stdin))
		req.Header[name] = []string{value}
		rec := serve(t, h, req)
		if rec.Code != http.StatusOK {
			return
		}
		id := rec.Header().Get(api.HeaderCallID)
		sp := c.Engine.Spec(id)
		if sp == nil {
			t.Fatalf("call %s never reached the executor", id)
		}
		if sp.Env["HYPER_CALL_ID"] != id || sp.Env["HYPER_FUNC_NAME"] != "env" {
			t.Fatalf("a header overrode the call's identity: %v", sp.Env)
		}
		for k := range sp.Env {
			for _, ch := range k {
				if !(ch == '_' || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9')) {
					t.Fatalf("env name %q from header %q", k, name)
				}
			}
			if k == "HTTP_AUTHORIZATION" {
				t.Fatalf("the Authorization header reached the function")
			}
		}
	})
}
