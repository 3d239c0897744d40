package localexec

import (
	"context"
	"errors"
	"fmt"
	"time"

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
	var retry []executor.Handle
	for _, h := range hs {
		if err := e.release(ctx, h); err != nil {
			errs = append(errs, fmt.Errorf("release %s: %w", h.CallID, err))
			if engineDown(ctx, err) {
				retry = append(retry, h)
			}
		}
	}
	if len(retry) > 0 {
		// The engine is away (restarting): nobody would call Release again,
		// and CleanOrphans runs only at the next leader change.
		e.wg.Add(1)
		go e.releaseLater(retry)
	}
	return errors.Join(errs...)
}

// releaseRetry bounds the background retries of a Release that found the
// engine away.
const releaseRetry = 10 * time.Minute

func (e *Executor) releaseLater(hs []executor.Handle) {
	defer e.wg.Done()
	deadline := time.Now().Add(releaseRetry)
	backoff := time.Second
	for len(hs) > 0 && time.Now().Before(deadline) {
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-e.ctx.Done():
			t.Stop()
			return // closing: CleanOrphans of the next leader sweeps them
		}
		backoff = min(backoff*2, 30*time.Second)
		var left []executor.Handle
		for _, h := range hs {
			if err := e.release(e.ctx, h); err != nil {
				left = append(left, h)
			}
		}
		hs = left
	}
	if len(hs) > 0 {
		e.log.Warn("could not release calls; CleanOrphans will", "calls", len(hs))
	}
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
		if err := removeCallDir(d); err != nil {
			return fmt.Errorf("remove call dir: %w", err)
		}
	}
	return nil
}
