package nomad

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/hyperfunc/hyperfunc/api"
	"github.com/hyperfunc/hyperfunc/e2e/harness"
	"github.com/hyperfunc/hyperfunc/nomadjob/nomadtest"
)

// callTimeout bounds one call on a busy machine (gVisor containers, image
// pulls through the loopback mirror).
const callTimeout = 3 * time.Minute

// nomadArgs are the agent flags that run calls on the real agent.
func nomadArgs(t *testing.T) []string {
	t.Helper()
	addr := nomadtest.RealAddr(t)
	// Released children are purged a second after their end (the agent
	// waits 2 minutes by default): the tests see the delayed purge happen
	// and leave the shared agent clean.
	args := []string{"-nomad-addr", addr, "-nomad-purge-delay", "1s"}
	if v := nomadtest.ShimVolume(); v != "" {
		args = append(args, "-nomad-shim-volume", v)
	}
	return args
}

// startAgent starts a one-node hyperfunc agent (-dev, data in its own dir
// so that it can be restarted) with the Nomad executor.
func startAgent(t *testing.T, extra ...string) *harness.Agent {
	t.Helper()
	args := nomadArgs(t)
	harness.Build(t)
	a := harness.StartAgent(t, harness.AgentOptions{Name: "nomad", Dev: true, Args: append(args, extra...)})
	return a
}

// nomadJobs lists the real agent's jobs whose ID contains sub.
func nomadJobs(t *testing.T, sub string) []jobStub {
	t.Helper()
	addr := nomadtest.RealAddr(t)
	resp, err := http.Get(addr + "/v1/jobs?prefix=hf-")
	if err != nil {
		t.Fatalf("nomad jobs: %v", err)
	}
	defer resp.Body.Close()
	var all []jobStub
	if err := json.NewDecoder(resp.Body).Decode(&all); err != nil {
		t.Fatalf("nomad jobs: %v", err)
	}
	var out []jobStub
	for _, j := range all {
		if strings.Contains(j.ID, sub) {
			out = append(out, j)
		}
	}
	return out
}

type jobStub struct {
	ID, ParentID, Status, Type string
}

// nomadJob reads one job of the real agent (nil: not found).
func nomadJob(t *testing.T, id string) map[string]any {
	t.Helper()
	resp, err := http.Get(nomadtest.RealAddr(t) + "/v1/job/" + url.PathEscape(id))
	if err != nil {
		t.Fatalf("nomad job: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == 404 {
		return nil
	}
	var j map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&j); err != nil {
		t.Fatalf("nomad job %s: %v", id, err)
	}
	return j
}

// children counts the dispatched children of jobs whose ID contains sub.
func children(t *testing.T, sub string) int {
	n := 0
	for _, j := range nomadJobs(t, sub) {
		if j.ParentID != "" {
			n++
		}
	}
	return n
}

func create(t *testing.T, a *harness.Agent, spec *api.FunctionSpec) {
	t.Helper()
	if _, err := a.Client().Functions().Create(context.Background(), spec); err != nil {
		t.Fatalf("create %s: %v", spec.Name, err)
	}
}

// call makes an async call and waits for its final record.
func call(t *testing.T, a *harness.Agent, name string, stdin []byte, header http.Header) *api.Call {
	t.Helper()
	id := submit(t, a, name, stdin, header)
	return harness.WaitCall(t, a.Client(), id, callTimeout, false)
}

func submit(t *testing.T, a *harness.Agent, name string, stdin []byte, header http.Header) string {
	t.Helper()
	var o *api.CallOptions
	if header != nil {
		o = &api.CallOptions{Header: header}
	}
	id, err := a.Client().Calls().Call(context.Background(), name, strings.NewReader(string(stdin)), o)
	if err != nil {
		t.Fatalf("call %s: %v", name, err)
	}
	return id
}

// output reads a finished call's stdout.
func output(t *testing.T, a *harness.Agent, id string) []byte {
	t.Helper()
	body, _, err := a.Client().Calls().Output(context.Background(), id, true)
	if err != nil {
		t.Fatalf("output of %s: %v", id, err)
	}
	defer body.Close()
	var b strings.Builder
	buf := make([]byte, 64<<10)
	for {
		n, err := body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			break
		}
	}
	return []byte(b.String())
}

func describe(c *api.Call) string {
	return fmt.Sprintf("state %s reason %q message %q exit %d stdout %d bytes", c.State, c.Reason, c.Message, c.ExitCode, c.StdoutSize)
}
