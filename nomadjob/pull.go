package nomadjob

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	nomad "github.com/hashicorp/nomad/api"
)

// Pull makes every eligible client pull image ahead of the first call: a
// sysbatch job runs once per client (the shim without an envelope exits at
// once). Only a failure to pull or start the image is an error.
func (e *Executor) Pull(ctx context.Context, image string) error {
	if image == "" {
		return fmt.Errorf("nomad executor: pull: %w: empty image", ErrRefused)
	}
	id := PullJobID(e.cfg.ClusterID, image)
	// A leftover identical job would not run again: start from scratch.
	if err := e.n.DeregisterJob(ctx, id, true); err != nil && !errors.Is(err, ErrNotFound) {
		return err
	}
	if err := e.n.RegisterJob(ctx, e.pullJob(image)); err != nil {
		return err
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), e.cfg.CollectTimeout)
		defer cancel()
		if err := e.n.DeregisterJob(cctx, id, true); err != nil && !errors.Is(err, ErrNotFound) {
			e.log.Warn("pull: purge failed", "job", id, "err", err)
		}
	}()
	var index uint64
	for {
		allocs, next, err := e.n.JobAllocations(ctx, id, index, 30*time.Second)
		if err != nil {
			if !IsUnavailable(err) || !sleep(ctx, e.cfg.StreamBackoffMin) {
				return fmt.Errorf("pull %s: %w", image, err)
			}
			continue
		}
		index = next
		if len(allocs) > 0 && allTerminal(allocs) {
			job, err := e.n.JobInfo(ctx, id)
			if err != nil {
				return fmt.Errorf("pull %s: %w", image, err)
			}
			if deref(job.Status) == "dead" {
				return e.pullErrors(ctx, image, allocs)
			}
		}
		if ctx.Err() != nil {
			return fmt.Errorf("pull %s: %w", image, ctx.Err())
		}
	}
}

func allTerminal(as []*nomad.AllocationListStub) bool {
	for _, a := range as {
		if !isTerminal(a.ClientStatus) {
			return false
		}
	}
	return true
}

func (e *Executor) pullErrors(ctx context.Context, image string, allocs []*nomad.AllocationListStub) error {
	var msgs []string
	for _, s := range allocs {
		if s.ClientStatus == nomad.AllocClientStatusComplete {
			continue
		}
		a, err := e.n.Allocation(ctx, s.ID)
		if err != nil {
			return fmt.Errorf("pull %s: %w", image, err)
		}
		ts := a.TaskStates[TaskName]
		if te := findEvent(ts, nomad.TaskDriverFailure); te != nil {
			msgs = append(msgs, nodeName(a)+": "+firstNonEmpty(te.DriverError, te.DisplayMessage))
		} else if te := findEvent(ts, nomad.TaskArtifactDownloadFailed); te != nil {
			msgs = append(msgs, nodeName(a)+": "+firstNonEmpty(te.DownloadError, te.DisplayMessage))
		} else if a.ClientStatus == nomad.AllocClientStatusLost {
			msgs = append(msgs, nodeName(a)+": allocation lost")
		}
	}
	if len(msgs) > 0 {
		return fmt.Errorf("pull %s failed on %d of %d clients: %s", image, len(msgs), len(allocs), strings.Join(msgs, "; "))
	}
	return nil
}
