package e2e

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hyperfunc/hyperfunc/api"
	"github.com/hyperfunc/hyperfunc/e2e/harness"
)

const mib = 1 << 20

// TestLimits checks the stdin and stdout limits at the limit and one byte
// past it, and the output cache rotation.
func TestLimits(t *testing.T) {
	t.Parallel()
	harness.Docker(t)
	a := harness.StartAgent(t, harness.AgentOptions{Dev: true})
	c := a.Client()
	ctx := context.Background()

	t.Run("stdin", func(t *testing.T) {
		t.Parallel()
		name := harness.Name("wc")
		if _, err := c.Functions().Create(ctx, &api.FunctionSpec{Name: name, Image: "ubuntu", Command: []string{"wc", "-c"}}); err != nil {
			t.Fatal(err)
		}
		before, err := c.Functions().Status(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		// One byte past the limit: 413, nothing queued.
		_, err = c.Calls().Call(ctx, name, bytes.NewReader(make([]byte, mib+1)), nil)
		if api.StatusCode(err) != 413 {
			t.Fatalf("stdin of 1 MiB + 1: %v, want HTTP 413", err)
		}
		after, err := c.Functions().Status(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		if *after != *before {
			t.Fatalf("status changed by a refused call: %+v -> %+v", before, after)
		}
		if calls, _, err := c.Calls().List(ctx, name, nil); err != nil || len(calls) != 0 {
			t.Fatalf("calls after a refused call: %v %v", calls, err)
		}
		// The same through the sync path and the CLI.
		rc, _, err := c.Calls().CallSync(ctx, name, bytes.NewReader(make([]byte, mib+1)), nil)
		if api.StatusCode(err) != 413 {
			if rc != nil {
				rc.Close()
			}
			t.Fatalf("sync stdin of 1 MiB + 1: %v, want HTTP 413", err)
		}
		if r := harness.Hyper(t, a, make([]byte, mib+1), "func", "call", name); r.Code == 0 || !strings.Contains(string(r.Stderr), "1MiB") {
			t.Errorf("hyper func call with 1 MiB + 1 of stdin: %s", r)
		}
		// A 5 MB photo through hyper and an 8 MiB file through curl: the
		// 413's message every time, never a connection reset.
		for i := range 5 {
			r := harness.Sh(t, a, t.TempDir(), "head -c 5000000 /dev/zero | hyper func call --sync "+name)
			if r.Code == 0 || !strings.Contains(string(r.Stderr), "stdin exceeds 1MiB") {
				t.Fatalf("attempt %d: 5 MB through hyper: %s", i, r)
			}
			r = harness.Sh(t, a, t.TempDir(), "head -c 8388608 /dev/zero > in && curl -sS -o /dev/null -w '%{http_code}' --data-binary @in "+a.URL()+"/v1/functions/"+name+"/call?sync=true")
			if r.Code != 0 || string(r.Stdout) != "413" {
				t.Fatalf("attempt %d: 8 MiB through curl: %s", i, r)
			}
		}
		// At the limit: accepted, and the function sees every byte.
		id, err := c.Calls().Call(ctx, name, bytes.NewReader(make([]byte, mib)), nil)
		if err != nil {
			t.Fatalf("stdin of 1 MiB: %v", err)
		}
		body, _, err := c.Calls().Output(ctx, id, true)
		if err != nil {
			t.Fatalf("get: %v", err)
		}
		if got := strings.TrimSpace(readAll(t, body)); got != "1048576" {
			t.Fatalf("wc -c of 1 MiB of stdin: %q", got)
		}
		if st, err := c.Functions().Status(ctx, name); err != nil || st.Finished != 1 || st.Pending+st.Running+st.Failed != 0 {
			t.Fatalf("status: %+v %v", st, err)
		}
	})

	t.Run("stdout", func(t *testing.T) {
		t.Parallel()
		at, past := harness.Name("head"), harness.Name("head")
		for name, n := range map[string]int{at: mib, past: mib + 1} {
			spec := &api.FunctionSpec{Name: name, Image: "ubuntu", Command: []string{"head", "-c", fmt.Sprint(n), "/dev/zero"}}
			if _, err := c.Functions().Create(ctx, spec); err != nil {
				t.Fatal(err)
			}
		}
		idAt, err := c.Calls().Call(ctx, at, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		idPast, err := c.Calls().Call(ctx, past, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		body, _, err := c.Calls().Output(ctx, idAt, true)
		if err != nil {
			t.Fatalf("get of 1 MiB of stdout: %v", err)
		}
		if out := readAll(t, body); out != string(make([]byte, mib)) {
			t.Fatalf("1 MiB of stdout came back as %d bytes", len(out))
		}
		call := harness.WaitCall(t, c, idPast, callTimeout, false)
		if call.State != api.StateFailed || call.Reason != api.ReasonOutput || !strings.Contains(call.Message, "output exceeds 1MiB") {
			t.Fatalf("1 MiB + 1 of stdout: %s %s %q", call.State, call.Reason, call.Message)
		}
		_, _, err = c.Calls().Output(ctx, idPast, true)
		if api.StatusCode(err) != 509 {
			t.Fatalf("get of a call over the stdout limit: %v, want HTTP 509", err)
		}
		if r := harness.Hyper(t, a, nil, "func", "get", idPast); r.Code == 0 || !strings.Contains(string(r.Stderr), "output exceeds") {
			t.Errorf("hyper func get of a call over the limit: %s", r)
		}
	})

	t.Run("rotation", func(t *testing.T) {
		t.Parallel()
		// A 3,000,000-byte output cache holds one 2 MiB output, not two.
		a := harness.StartAgent(t, harness.AgentOptions{Dev: true, Args: []string{"-output-cache", "3000000", "-max-stdout", fmt.Sprint(2 * mib)}})
		c := a.Client()
		name := harness.Name("big")
		spec := &api.FunctionSpec{Name: name, Image: "ubuntu", Command: []string{"head", "-c", fmt.Sprint(2 * mib), "/dev/zero"}}
		if _, err := c.Functions().Create(ctx, spec); err != nil {
			t.Fatal(err)
		}
		first, err := c.Calls().Call(ctx, name, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		if call := harness.WaitCall(t, c, first, callTimeout, false); call.State != api.StateFinished {
			t.Fatalf("first call: %+v", call)
		}
		body, _, err := c.Calls().Output(ctx, first, false)
		if err != nil {
			t.Fatalf("get of the first output before rotation: %v", err)
		}
		if n := len(readAll(t, body)); n != 2*mib {
			t.Fatalf("first output: %d bytes", n)
		}
		second, err := c.Calls().Call(ctx, name, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		if call := harness.WaitCall(t, c, second, callTimeout, false); call.State != api.StateFinished {
			t.Fatalf("second call: %+v", call)
		}
		_, _, err = c.Calls().Output(ctx, first, false)
		if api.StatusCode(err) != 410 {
			t.Fatalf("get of a rotated output: %v, want HTTP 410", err)
		}
		if call, _, err := c.Calls().Info(ctx, first, nil); err != nil || !call.Rotated {
			t.Errorf("the rotated call's record: %+v %v", call, err)
		}
		body, _, err = c.Calls().Output(ctx, second, true)
		if err != nil {
			t.Fatalf("get of the newest output: %v", err)
		}
		if n := len(readAll(t, body)); n != 2*mib {
			t.Fatalf("second output: %d bytes", n)
		}
	})
}

// waitState waits until the call's record is in state.
func waitState(t *testing.T, c *api.Client, id, state string, timeout time.Duration) *api.Call {
	t.Helper()
	var call *api.Call
	harness.Eventually(t, timeout, func() (bool, string) {
		var err error
		call, _, err = c.Calls().Info(context.Background(), id, nil)
		if err != nil {
			return false, err.Error()
		}
		return call.State == state, fmt.Sprintf("call %s is %s, want %s", id, call.State, state)
	})
	return call
}
