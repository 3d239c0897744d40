package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/docker/docker/client"

	"github.com/hyperfunc/hyperfunc/api"
	"github.com/hyperfunc/hyperfunc/e2e/harness"
)

// TestFailures: a non-zero exit, a missing image, a timeout and a cancel
// each end the call with the right state, message and `get` status, and
// leave no container running.
func TestFailures(t *testing.T) {
	t.Parallel()
	dc := harness.Docker(t)
	a := harness.StartAgent(t, harness.AgentOptions{Dev: true})
	c := a.Client()
	ctx := context.Background()
	create := func(t *testing.T, spec *api.FunctionSpec) {
		t.Helper()
		if _, err := c.Functions().Create(ctx, spec); err != nil {
			t.Fatalf("create %s: %v", spec.Name, err)
		}
	}
	call := func(t *testing.T, name string) string {
		t.Helper()
		id, err := c.Calls().Call(ctx, name, nil, nil)
		if err != nil {
			t.Fatalf("call %s: %v", name, err)
		}
		return id
	}

	t.Run("exit", func(t *testing.T) {
		t.Parallel()
		name := harness.Name("exit")
		create(t, &api.FunctionSpec{Name: name, Image: "ubuntu", Command: []string{"sh", "-c", "echo partial; echo something broke >&2; exit 3"}})
		id := call(t, name)
		got := harness.WaitCall(t, c, id, callTimeout, false)
		if got.State != api.StateFailed || got.Reason != api.ReasonExit || got.ExitCode != 3 {
			t.Fatalf("call: %s reason %q exit %d %q", got.State, got.Reason, got.ExitCode, got.Message)
		}
		if !strings.Contains(got.Message, "something broke") || !strings.Contains(got.Message, "3") {
			t.Errorf("message %q lacks the exit code or the stderr preview", got.Message)
		}
		_, _, err := c.Calls().Output(ctx, id, true)
		var ae *api.Error
		if api.StatusCode(err) != 500 || !asAPIError(err, &ae) || !strings.Contains(ae.Message, "something broke") || ae.CallID != id {
			t.Fatalf("get: %v, want HTTP 500 with the message", err)
		}
		if r := harness.Hyper(t, a, nil, "func", "get", id); r.Code == 0 || !strings.Contains(string(r.Stderr), "something broke") {
			t.Errorf("hyper func get: %s", r)
		}
		assertLogEvent(t, c, name, id, "FAILED", "something broke")
	})

	t.Run("missing-image", func(t *testing.T) {
		t.Parallel()
		name := harness.Name("noimage")
		image := "127.0.0.1:5000/hyperfunc-e2e/missing-" + harness.RunID() + ":latest"
		create(t, &api.FunctionSpec{Name: name, Image: image, Command: []string{"true"}})
		id := call(t, name)
		got := harness.WaitCall(t, c, id, callTimeout, false)
		if got.State != api.StateFailed || got.Reason != api.ReasonImage {
			t.Fatalf("call: %s reason %q %q", got.State, got.Reason, got.Message)
		}
		if !strings.Contains(got.Message, "missing-"+harness.RunID()) {
			t.Errorf("message %q does not name the image", got.Message)
		}
		_, _, err := c.Calls().Output(ctx, id, true)
		if api.StatusCode(err) != 500 || !strings.Contains(err.Error(), "missing-"+harness.RunID()) {
			t.Fatalf("get: %v, want HTTP 500 with the pull error", err)
		}
		assertLogEvent(t, c, name, id, "FAILED", "missing-"+harness.RunID())
	})

	t.Run("timeout", func(t *testing.T) {
		t.Parallel()
		name := harness.Name("timeout")
		harness.Hyper(t, a, nil, "func", "create", "--name", name, "--timeout", "2", "ubuntu", "sleep", "3600").Must(t, "create --timeout 2")
		// sleep 3600 never ends first: FAILED "timeout" proves the 2s
		// timeout stopped it. How fast is not asserted (speed belongs to
		// make bench); the wait's deadline only catches a hang.
		id := call(t, name)
		got := harness.WaitCall(t, c, id, callTimeout, false)
		if got.State != api.StateFailed || got.Reason != api.ReasonTimeout {
			t.Fatalf("call: %s reason %q %q", got.State, got.Reason, got.Message)
		}
		_, _, err := c.Calls().Output(ctx, id, true)
		if api.StatusCode(err) != 504 {
			t.Fatalf("get: %v, want HTTP 504", err)
		}
		waitNoContainer(t, dc, id)
	})

	t.Run("cancel", func(t *testing.T) {
		t.Parallel()
		name := harness.Name("cancel")
		create(t, &api.FunctionSpec{Name: name, Image: "ubuntu", Command: []string{"sleep", "3600"}}) // outlasts any wait before the cancel
		id := call(t, name)
		waitState(t, c, id, api.StateRunning, callTimeout)
		harness.Eventually(t, callTimeout, func() (bool, string) {
			cs, err := harness.CallContainers(ctx, dc, id)
			if err != nil {
				return false, err.Error()
			}
			return len(cs) == 1 && cs[0].State == "running", fmt.Sprintf("containers of the call: %v", cs)
		})
		r := harness.Hyper(t, a, nil, "func", "cancel", id).Must(t, "cancel")
		_ = r
		got := harness.WaitCall(t, c, id, callTimeout, false)
		if got.State != api.StateCanceled {
			t.Fatalf("call after cancel: %s reason %q %q", got.State, got.Reason, got.Message)
		}
		waitNoContainer(t, dc, id)
		assertLogEvent(t, c, name, id, "CANCELED", "")

		// A queued call cancels too, and never gets a container.
		id2 := call(t, name)
		if err := c.Calls().Cancel(ctx, id2); err != nil {
			t.Fatalf("cancel: %v", err)
		}
		got = harness.WaitCall(t, c, id2, callTimeout, false)
		if got.State != api.StateCanceled {
			t.Fatalf("second call after cancel: %s %q", got.State, got.Message)
		}
		waitNoContainer(t, dc, id2)
	})
}

func asAPIError(err error, target **api.Error) bool {
	e, ok := err.(*api.Error)
	if ok {
		*target = e
	}
	return ok
}

// waitNoContainer waits until no container of the call is left running
// (`docker ps`) and then until none is left at all (removed).
func waitNoContainer(t *testing.T, dc *client.Client, callID string) {
	t.Helper()
	harness.Eventually(t, callTimeout, func() (bool, string) {
		cs, err := harness.CallContainers(context.Background(), dc, callID)
		if err != nil {
			return false, err.Error()
		}
		var states []string
		for _, c := range cs {
			states = append(states, c.ID[:12]+" "+c.State)
		}
		return len(cs) == 0, fmt.Sprintf("containers of call %s left: %v", callID, states)
	})
}

// assertLogEvent checks that the function's log has an event of kind for
// the call whose text contains want.
func assertLogEvent(t *testing.T, c *api.Client, name, id, kind, want string) {
	t.Helper()
	var found []string
	if err := c.Calls().Logs(context.Background(), name, &api.LogOptions{CallID: id}, func(ev api.LogEvent) error {
		if ev.Kind == kind {
			found = append(found, ev.Line())
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(found) != 1 || !strings.Contains(found[0], want) {
		t.Errorf("log events %s of call %s: %q, want one containing %q", kind, id, found, want)
	}
}
