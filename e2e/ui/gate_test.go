package ui

import (
	"context"
	"fmt"
	"testing"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/client"

	"github.com/hyperfunc/hyperfunc/e2e/harness"
)

// gatedScript waits for /tmp/go in its own container, then prints out:
// a call that stays RUNNING until the test says (release), so the browser
// can be shown each state without a race against the clock.
func gatedScript(out string) []string {
	return []string{"sh", "-c", "while [ ! -e /tmp/go ]; do sleep 0.2; done; echo " + out}
}

// release lets a gated call end: it creates /tmp/go in the call's
// container (docker exec), once the container runs.
func release(t *testing.T, dc *client.Client, callID string) {
	t.Helper()
	ctx := context.Background()
	var cid string
	harness.Eventually(t, waitTimeout, func() (bool, string) {
		cs, err := harness.CallContainers(ctx, dc, callID)
		if err != nil {
			return false, err.Error()
		}
		for _, c := range cs {
			if c.State == "running" {
				cid = c.ID
				return true, ""
			}
		}
		return false, fmt.Sprintf("no running container of call %s: %v", callID, cs)
	})
	ex, err := dc.ContainerExecCreate(ctx, cid, container.ExecOptions{Cmd: []string{"touch", "/tmp/go"}})
	if err != nil {
		t.Fatalf("exec in the container of %s: %v", callID, err)
	}
	if err := dc.ContainerExecStart(ctx, ex.ID, container.ExecStartOptions{}); err != nil {
		t.Fatalf("exec start in the container of %s: %v", callID, err)
	}
	harness.Eventually(t, waitTimeout, func() (bool, string) {
		in, err := dc.ContainerExecInspect(ctx, ex.ID)
		if cerrdefs.IsNotFound(err) {
			// The exec went with its container: the file let the call end,
			// and the executor removes a call's container once it is
			// collected. The page's next state says whether it did.
			return true, ""
		}
		if err != nil {
			return false, err.Error()
		}
		if !in.Running && in.ExitCode != 0 {
			// The touch let the call end, and its container exited under
			// the exec before the exec's own end was recorded (gVisor:
			// 128, seen in CI): the page's next state says whether it
			// did. Only a container still running means the touch failed.
			c, err := dc.ContainerInspect(ctx, cid)
			if cerrdefs.IsNotFound(err) || (err == nil && c.State != nil && !c.State.Running) {
				return true, ""
			}
			t.Fatalf("touch /tmp/go in the container of %s exited %d", callID, in.ExitCode)
		}
		return !in.Running, "touch /tmp/go still running"
	})
}
