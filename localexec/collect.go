package localexec

import (
	"context"
	"fmt"
	"strconv"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/pkg/stdcopy"
	"github.com/hyperfunc/hyperfunc/api"
	"github.com/hyperfunc/hyperfunc/executor"
)

// collect reads the result of an exited container that no watcher saw end
// (this process crashed or restarted meanwhile). Stdout comes from the
// container's logs: the "local" log driver keeps it byte for byte.
func (e *Executor) collect(ctx context.Context, callID string, ins container.InspectResponse) (executor.Event, error) {
	ev, limit, reason, msg, err := e.collectRaw(ctx, callID, ins)
	if err != nil {
		return ev, err
	}
	return outcome(ev, limit, reason, msg), nil
}

// collectRaw reads the result and guesses the reason the container ended,
// leaving the verdict to outcome.
func (e *Executor) collectRaw(ctx context.Context, callID string, ins container.InspectResponse) (ev executor.Event, limit int64, reason, msg string, err error) {
	rc, err := e.cli.ContainerLogs(ctx, ins.ID, container.LogsOptions{ShowStdout: true, ShowStderr: true})
	if err != nil {
		return ev, 0, "", "", fmt.Errorf("logs of %s: %w", ins.ID, err)
	}
	defer rc.Close()
	limit = labelInt(ins, labelStdoutLimit, DefaultStdoutLimit)
	stdout := &capped{limit: limit}
	stderr := &capped{limit: executor.StderrPreviewBytes}
	if _, err := stdcopy.StdCopy(stdout, stderr, rc); err != nil {
		return ev, 0, "", "", fmt.Errorf("logs of %s: %w", ins.ID, err)
	}
	out, truncated := stdout.result()
	errPreview, _ := stderr.result()
	ev = executor.Event{
		CallID: callID, Ref: ins.ID, Stdout: out, Truncated: truncated, Stderr: string(errPreview),
	}
	if ins.State != nil {
		ev.ExitCode = ins.State.ExitCode
		ev.StartedAt = parseTime(ins.State.StartedAt)
		ev.EndedAt = parseTime(ins.State.FinishedAt)
	}
	// The reason we stopped it died with the old process; the labels and the
	// run time tell a timeout apart, an output kill shows as truncation.
	if ins.Config != nil {
		if d, err := time.ParseDuration(ins.Config.Labels[labelTimeout]); err == nil && d > 0 &&
			ev.ExitCode != 0 && !ev.StartedAt.IsZero() && ev.EndedAt.Sub(ev.StartedAt) >= d {
			reason, msg = api.ReasonTimeout, fmt.Sprintf("timeout after %s", d)
		}
	}
	if reason == "" && ins.State != nil && ins.State.OOMKilled {
		reason, msg = api.ReasonExit, fmt.Sprintf("exit code %d: out of memory", ev.ExitCode)
	}
	if reason == "" && ins.State != nil && ins.State.Status == "dead" {
		reason, msg = api.ReasonLost, "container is dead: "+ins.State.Error
	}
	return ev, limit, reason, msg, nil
}

func labelInt(ins container.InspectResponse, key string, def int64) int64 {
	if ins.Config == nil {
		return def
	}
	n, err := strconv.ParseInt(ins.Config.Labels[key], 10, 64)
	if err != nil || n <= 0 {
		return def
	}
	return n
}

func parseTime(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil || t.Year() < 2000 { // the engine says 0001-01-01 for "never"
		return time.Time{}
	}
	return t
}

// removeNow removes a container on a path that must not wait long (Start).
func (e *Executor) removeNow(id string) {
	ctx, cancel := context.WithTimeout(e.ctx, 30*time.Second)
	defer cancel()
	if err := e.cli.ContainerRemove(ctx, id, container.RemoveOptions{Force: true}); err != nil && !cerrdefs.IsNotFound(err) {
		e.log.Warn("remove container; CleanOrphans will retry", "container", id, "err", err)
	}
}

// remove removes a collected container, retrying while the engine is away
// (restarting dockerd) for up to RemoveRetry: a result once collected must
// not leave its container behind.
func (e *Executor) remove(id string) {
	deadline := time.Now().Add(e.removeRetry)
	backoff := 100 * time.Millisecond
	for {
		err := e.cli.ContainerRemove(e.ctx, id, container.RemoveOptions{Force: true})
		if err == nil || cerrdefs.IsNotFound(err) {
			return
		}
		if e.ctx.Err() != nil {
			return // closing: the next executor's CleanOrphans removes it
		}
		if time.Now().After(deadline) {
			e.log.Warn("remove container; CleanOrphans will retry", "container", id, "err", err)
			return
		}
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-e.ctx.Done():
			t.Stop()
			return
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}
