package nomad

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hyperfunc/hyperfunc/api"
	"github.com/hyperfunc/hyperfunc/e2e/harness"
)

// TestNomadFailures: a non-zero exit, a missing image, a timeout, a cancel
// and stdout past the limit, each with the reason the local engine gives.
func TestNomadFailures(t *testing.T) {
	a := startAgent(t, "-max-stdout", "65536")
	c := a.Client()
	ctx := context.Background()

	exit := harness.Name("exit")
	create(t, a, &api.FunctionSpec{Name: exit, Image: "ubuntu", Command: []string{"sh", "-c", "echo partial; echo something broke >&2; exit 3"}})
	missing := harness.Name("noimage")
	// A tag other than latest: the driver does not pull on its own, and no
	// registry has it.
	create(t, a, &api.FunctionSpec{Name: missing, Image: "127.0.0.1:5000/hyperfunc-e2e/missing-" + harness.RunID() + ":1", Command: []string{"true"}})
	slow := harness.Name("slow")
	create(t, a, &api.FunctionSpec{Name: slow, Image: "ubuntu", Command: []string{"sleep", "120"}, Timeout: 2})
	hold := harness.Name("hold")
	create(t, a, &api.FunctionSpec{Name: hold, Image: "ubuntu", Command: []string{"sleep", "300"}})
	loud := harness.Name("loud")
	create(t, a, &api.FunctionSpec{Name: loud, Image: "ubuntu", Command: []string{"head", "-c", "100000", "/dev/zero"}})

	// All at once: they are independent, and the machine is slow.
	ids := map[string]string{}
	for _, name := range []string{exit, missing, slow, hold, loud} {
		ids[name] = submit(t, a, name, nil, nil)
	}
	// Cancel once the call runs on Nomad (dispatched, container up).
	harness.Eventually(t, callTimeout, func() (bool, string) {
		cl, _, err := c.Calls().Info(ctx, ids[hold], nil)
		if err != nil {
			return false, err.Error()
		}
		return cl.State == api.StateRunning, "hold call " + cl.State
	})
	if err := c.Calls().Cancel(ctx, ids[hold]); err != nil {
		t.Fatalf("cancel: %v", err)
	}

	got := func(name string) *api.Call { return harness.WaitCall(t, c, ids[name], callTimeout, false) }
	if cl := got(exit); cl.State != api.StateFailed || cl.Reason != api.ReasonExit || cl.ExitCode != 3 ||
		!strings.Contains(cl.Message, "something broke") {
		t.Errorf("exit 3 (message with the stderr preview): %s", describe(cl))
	}
	if cl := got(missing); cl.State != api.StateFailed || cl.Reason != api.ReasonImage || !strings.Contains(cl.Message, "missing-"+harness.RunID()) {
		t.Errorf("missing image: %s", describe(cl))
	}
	if cl := got(slow); cl.State != api.StateFailed || cl.Reason != api.ReasonTimeout {
		t.Errorf("timeout: %s", describe(cl))
	}
	if cl := got(hold); cl.State != api.StateCanceled {
		t.Errorf("cancel: %s", describe(cl))
	}
	if cl := got(loud); cl.State != api.StateFailed || cl.Reason != api.ReasonOutput || !strings.Contains(cl.Message, "64KiB") {
		t.Errorf("stdout past the limit: %s", describe(cl))
	}
	// The canceled call's child is stopped on Nomad, then purged.
	harness.Eventually(t, time.Minute, func() (bool, string) {
		n := children(t, hold)
		return n == 0, fmt.Sprintf("%d children of %s left", n, hold)
	})
}

// TestNomadManyShortCalls: 40 short calls, 10 at a time, each with its
// own stdin; every output comes back intact (the alloc log stream loses
// some of these on real Nomad; the result file does not).
func TestNomadManyShortCalls(t *testing.T) {
	a := startAgent(t, "-default-quota", "10")
	name := harness.Name("short")
	create(t, a, &api.FunctionSpec{Name: name, Image: "ubuntu", Command: []string{"cat"}})
	const n = 40
	ids := make([]string, n)
	for i := range ids {
		ids[i] = submit(t, a, name, []byte(fmt.Sprintf("call %02d of %s\n", i, name)), nil)
	}
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []string
	)
	for i, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cl, err := harness.WaitCallErr(context.Background(), a.Client(), id, 2*callTimeout, false)
			var msg string
			switch {
			case err != nil:
				msg = fmt.Sprintf("call %d: %v", i, err)
			case cl.State != api.StateFinished:
				msg = fmt.Sprintf("call %d: %s", i, describe(cl))
			default:
				body, _, err := a.Client().Calls().Output(context.Background(), id, true)
				if err != nil {
					msg = fmt.Sprintf("call %d output: %v", i, err)
					break
				}
				var b bytes.Buffer
				_, _ = b.ReadFrom(body)
				body.Close()
				if want := fmt.Sprintf("call %02d of %s\n", i, name); b.String() != want {
					msg = fmt.Sprintf("call %d: stdout %q, want %q", i, b.String(), want)
				}
			}
			if msg != "" {
				mu.Lock()
				errs = append(errs, msg)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(errs) > 0 {
		t.Fatalf("%d of %d calls wrong:\n%s", len(errs), n, strings.Join(errs, "\n"))
	}
	harness.Eventually(t, time.Minute, func() (bool, string) {
		k := children(t, name)
		return k == 0, fmt.Sprintf("%d of the %d children not purged", k, n)
	})
}
