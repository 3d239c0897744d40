package server_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hyperfunc/hyperfunc/api"
	"github.com/hyperfunc/hyperfunc/fsm"
	"github.com/hyperfunc/hyperfunc/server"
	"github.com/hyperfunc/hyperfunc/server/servertest"
)

func TestSyncCallIsBinarySafe(t *testing.T) {
	c := servertest.NewCluster(t, 1, servertest.Options{})
	f := createFn(t, c.Client(0), "bytes", "cat")
	var stdin []byte
	for i := range 3 * 256 {
		stdin = append(stdin, byte(i))
	}
	r := do(t, "POST", c.URL(0)+"/v1/functions/bytes/call?sync=true", "", stdin).want(t, 200)
	if !bytes.Equal(r.Body, stdin) {
		t.Fatalf("stdout differs from stdin: %q", r.Body)
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/octet-stream" {
		t.Fatalf("Content-Type %q", ct)
	}
	if r.Header.Get(api.HeaderCallID) == "" {
		t.Fatal("no call ID header")
	}
	r = do(t, "POST", f.Address+"/sync", "", stdin).want(t, 200)
	if !bytes.Equal(r.Body, stdin) {
		t.Fatalf("stdout of the per-function address differs from stdin: %q", r.Body)
	}
	// Through the Go client too.
	body, _, err := c.Client(0).Calls().CallSync(ctx(t), "bytes", bytes.NewReader(stdin), nil)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(body)
	body.Close()
	if !bytes.Equal(got, stdin) {
		t.Fatalf("client: stdout differs from stdin")
	}
}

// TestGetStatusCodes: `get` answers as Hyper does: 200 done, 201 running,
// 202 queued, 404 unknown, 410 rotated out, 500 failed, 504 timeout, 509
// output too large; on the management API and the per-function address.
func TestGetStatusCodes(t *testing.T) {
	c := servertest.NewCluster(t, 1, servertest.Options{Configure: func(_ int, cfg *server.Config) {
		cfg.DefaultQuota = 1
		cfg.StdoutLimit = 64
		// Room for one 10-byte output and a bit: the second rotates the first out.
		cfg.FSM = fsm.Config{OutputCacheBytes: 16, LogCacheBytes: 1 << 20}
	}})
	cl := c.Client(0)
	get := func(id string) *response {
		return do(t, "GET", c.URL(0)+"/v1/calls/"+id+"/output", "", nil)
	}
	done := func(fn, stdin string) string {
		id := call(t, cl, fn, stdin)
		servertest.Eventually(t, 60*time.Second, func() error {
			if info, _, err := cl.Calls().Info(ctx(t), id, nil); err != nil || !info.Done() {
				return fmt.Errorf("call %s not done (%v)", id, err)
			}
			return nil
		})
		return id
	}
	cat := createFn(t, cl, "cat", "cat")
	createFn(t, cl, "exit", "exit", "3")
	createFn(t, cl, "big", "output", "65")
	createFn(t, cl, "slow", "sleep")
	if _, err := cl.Functions().Create(ctx(t), &api.FunctionSpec{Name: "forever", Image: "busybox", Command: []string{"sleep"}, Timeout: 1}); err != nil {
		t.Fatal(err)
	}

	first := done("cat", "0123456789")
	r := get(first).want(t, 200)
	if string(r.Body) != "0123456789" || r.Header.Get(api.HeaderCallState) != api.StateFinished {
		t.Fatalf("200 body %q state %q", r.Body, r.Header.Get(api.HeaderCallState))
	}
	second := done("cat", "abcdefghij") // two outputs exceed the cache: the first rotates out
	if msg := get(first).want(t, 410).errorBody(t); !strings.Contains(msg, "rotated") {
		t.Fatalf("410 message %q", msg)
	}
	get(second).want(t, 200)
	if info, _, _ := cl.Calls().Info(ctx(t), first, nil); !info.Rotated {
		t.Fatal("the rotated call is not marked rotated")
	}

	failed := done("exit", "")
	if msg := get(failed).want(t, 500).errorBody(t); !strings.Contains(msg, "exit status 3") {
		t.Fatalf("500 message %q", msg)
	}
	tooBig := done("big", "")
	get(tooBig).want(t, 509).errorBody(t)
	timedOut := done("forever", "")
	get(timedOut).want(t, 504).errorBody(t)
	get("no-such-call").want(t, 404).errorBody(t)

	running := call(t, cl, "slow", "")
	waitRunning(t, c.Engine, running)
	// The engine runs it a moment before its RUNNING is applied (STARTING
	// answers as queued, 202): wait for the record too.
	waitState(t, cl, running, api.StateRunning)
	queued := call(t, cl, "slow", "")
	r = get(running).want(t, 201)
	if r.Header.Get(api.HeaderCallState) != api.StateRunning {
		t.Fatalf("running call state %q", r.Header.Get(api.HeaderCallState))
	}
	r = get(queued).want(t, 202)
	if r.Header.Get(api.HeaderCallState) != api.StatePending {
		t.Fatalf("queued call state %q", r.Header.Get(api.HeaderCallState))
	}

	// The per-function address answers the same codes.
	pub := func(id string) string {
		return strings.Replace(cat.Address, "/call/", "/output/", 1) + "/" + id
	}
	do(t, "GET", pub(second), "", nil).want(t, 200)
	do(t, "GET", pub(first), "", nil).want(t, 410).errorBody(t)
	do(t, "GET", pub(failed), "", nil).want(t, 404).errorBody(t) // another function's call
	do(t, "GET", pub("nope"), "", nil).want(t, 404).errorBody(t)

	// A sync call of a failing function answers its error with the call ID.
	c.Engine.ReleaseAll() // let the queue drain so the sync call runs
	r = do(t, "POST", c.URL(0)+"/v1/functions/exit/call?sync=true", "", nil).want(t, 500)
	var eb api.ErrorBody
	if err := json.Unmarshal(r.Body, &eb); err != nil || eb.CallID == "" {
		t.Fatalf("500 of a sync call without a call ID: %s", r.Body)
	}
	// output?wait=true blocks until the end.
	last := call(t, cl, "cat", "waited")
	r = do(t, "GET", c.URL(0)+"/v1/calls/"+last+"/output?wait=true", "", nil).want(t, http.StatusOK)
	if string(r.Body) != "waited" {
		t.Fatalf("wait=true body %q", r.Body)
	}
}
