package server_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/hyperfunc/hyperfunc/executor"
	"github.com/hyperfunc/hyperfunc/server/servertest"
)

// A function's user reaches the executor as given, nobody when empty, and
// anything that is not Docker's user form is a 400 that says why.
func TestFunctionUser(t *testing.T) {
	engine := servertest.NewEngine()
	c := servertest.NewCluster(t, 1, servertest.Options{Engine: engine})
	c.WaitForLeader()
	for _, u := range []string{"bad user", "a:b:c", "root;rm", strings.Repeat("a", 40), "-1"} {
		r := do(t, http.MethodPost, c.URL(0)+"/v1/functions", "", map[string]any{"name": "f", "image": "busybox", "user": u}).want(t, 400)
		if msg := r.errorBody(t); !strings.Contains(msg, "invalid user") {
			t.Errorf("user %q: %q", u, msg)
		}
	}
	do(t, http.MethodPost, c.URL(0)+"/v1/functions", "", map[string]any{"name": "f", "image": "busybox", "user": "1000:1000"}).want(t, 201)
	if f := registered(t, engine); f.RunAs() != "1000:1000" {
		t.Fatalf("registered %+v", f)
	}
	do(t, http.MethodPost, c.URL(0)+"/v1/functions/f", "", map[string]any{"user": ""}).want(t, 200)
	if f := registered(t, engine); f.RunAs() != "65534:65534" {
		t.Fatalf("after update: %+v", f)
	}
	do(t, http.MethodPost, c.URL(0)+"/v1/functions/f", "", map[string]any{"user": "x y"}).want(t, 400)
}

func registered(t *testing.T, e *servertest.Engine) executor.Function {
	t.Helper()
	f, ok := e.Function("default/f")
	if !ok {
		t.Fatal("default/f is not registered")
	}
	return f
}
