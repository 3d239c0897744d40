package localexec

import (
	"context"
	"errors"
	"fmt"
	"os"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/hyperfunc/hyperfunc/executor"
)

// Release implements server.Executor: the outcome of these calls is
// recorded, so their containers and call dirs go. Until then both stay, so
// a leader that dies between the executor's report and the record leaves
// the result for the next leader's Reconcile. A call dir goes only once its
// container is gone (an engine that does not answer keeps both, for a later
// Release or CleanOrphans).
func (e *Executor) Release(ctx context.Context, hs []executor.Handle) error {
	var errs []error
	for _, h := range hs {
		if err := e.release(ctx, h); err != nil {
			errs = append(errs, fmt.Errorf("release %s: %w", h.CallID, err))
		}
	}
	return errors.Join(errs...)
}

func (e *Executor) release(ctx context.Context, h executor.Handle) error {
	if !validCallID.MatchString(h.CallID) {
		return fmt.Errorf("bad call ID %q", h.CallID)
	}
	dirs := []string{e.callDir(h.CallID)}
	ins, err := e.inspectCall(ctx, h)
	switch {
	case err == nil:
		// The container may be another agent's, with its dir elsewhere.
		if d := targetOf(h.CallID, ins).dir; isCallDir(d, h.CallID) && d != dirs[0] {
			dirs = append(dirs, d)
		}
		if err := e.cli.ContainerRemove(ctx, ins.ID, container.RemoveOptions{Force: true}); err != nil && !cerrdefs.IsNotFound(err) {
			return fmt.Errorf("remove container: %w", err)
		}
	case !cerrdefs.IsNotFound(err):
		return fmt.Errorf("inspect container: %w", err)
	}
	for _, d := range dirs {
		if err := os.RemoveAll(d); err != nil {
			return fmt.Errorf("remove call dir: %w", err)
		}
	}
	return nil
}
