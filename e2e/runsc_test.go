package e2e

import (
	"context"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/hyperfunc/hyperfunc/api"
	"github.com/hyperfunc/hyperfunc/e2e/harness"
)

// TestCallsRunUnderGVisor: a call's container is created with runtime
// runsc (the engine says so), and from inside, the kernel log is gVisor's
// own ("Starting gVisor..."), not the host's, which a function under runc
// would read or be refused.
func TestCallsRunUnderGVisor(t *testing.T) {
	t.Parallel()
	dc := harness.Docker(t)
	a := harness.StartAgent(t, harness.AgentOptions{Dev: true})
	c := a.Client()
	ctx := context.Background()

	// From inside: the kernel log.
	name := harness.Name("dmesg")
	if _, err := c.Functions().Create(ctx, &api.FunctionSpec{Name: name, Image: "ubuntu", Command: []string{"dmesg"}}); err != nil {
		t.Fatal(err)
	}
	out, _, err := c.Calls().CallSync(ctx, name, nil, nil)
	if err != nil {
		t.Fatalf("dmesg: %v", err)
	}
	b, _ := io.ReadAll(out)
	out.Close()
	if !strings.Contains(string(b), "gVisor") {
		t.Fatalf("dmesg inside a call does not show gVisor's kernel:\n%s", b)
	}

	// From the engine: the container's runtime.
	name = harness.Name("inspect")
	if _, err := c.Functions().Create(ctx, &api.FunctionSpec{Name: name, Image: "ubuntu", Command: []string{"sleep", "3600"}}); err != nil {
		t.Fatal(err)
	}
	id, err := c.Calls().Call(ctx, name, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	var ctr string
	harness.Eventually(t, callTimeout, func() (bool, string) {
		cs, err := harness.CallContainers(ctx, dc, id)
		if err != nil {
			return false, err.Error()
		}
		if len(cs) != 1 || cs[0].State != "running" {
			return false, fmt.Sprintf("containers of the call: %v", cs)
		}
		ctr = cs[0].ID
		return true, ""
	})
	ins, err := dc.ContainerInspect(ctx, ctr)
	if err != nil {
		t.Fatal(err)
	}
	if ins.HostConfig == nil || ins.HostConfig.Runtime != "runsc" {
		t.Errorf("the call's container runs with runtime %q, want runsc", ins.HostConfig.Runtime)
	}
	if err := c.Calls().Cancel(ctx, id); err != nil {
		t.Fatal(err)
	}
	if got := harness.WaitCall(t, c, id, callTimeout, false); got.State != api.StateCanceled {
		t.Fatalf("after cancel: %s %q", got.State, got.Message)
	}
}
