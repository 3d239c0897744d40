package localexec

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/pkg/stdcopy"
	"github.com/hyperfunc/hyperfunc/api"
	"github.com/hyperfunc/hyperfunc/executor"
	"github.com/hyperfunc/hyperfunc/shim"
)

// msgStoppedOutside explains a call whose container was stopped by someone
// other than hyperfunc: the function did not fail, its exit code (143 for
// dockerd's SIGTERM) would blame it wrongly.
const msgStoppedOutside = "the container was stopped outside hyperfunc (engine restart or docker stop)"

// target is what a collector needs to know of a call's container.
type target struct {
	callID  string
	ref     string // container ID ("" when there is none)
	dir     string // host call dir
	limit   int64
	timeout time.Duration
}

// targetOf reads the target of a container from its labels.
func targetOf(callID string, ins container.InspectResponse) target {
	t := target{callID: callID, ref: ins.ID, limit: labelInt(ins, labelStdoutLimit, DefaultStdoutLimit)}
	if ins.Config != nil {
		t.dir = ins.Config.Labels[labelCallDir]
		if isWarm(ins.Config.Labels) {
			// Claimed: its dir moved from the sandbox's to the call's.
			t.dir = warmCallDir(ins.Config.Labels, callID)
		}
		if d, err := time.ParseDuration(ins.Config.Labels[labelTimeout]); err == nil && d > 0 {
			t.timeout = d
		}
	}
	return t
}

// collect turns what an ended call left into its final event: result.json
// and stdout from the call dir (binary-safe), the stderr preview from the
// container's logs (best effort: the engine may be away). c carries the
// reason this executor stopped the call, if it did; it may be nil.
// engineErr is set when the engine stopped answering during the call.
func (e *Executor) collect(ctx context.Context, c *call, t target, engineErr error) executor.Event {
	ev := executor.Event{CallID: t.callID, Ref: t.ref}
	var dr dirResult
	if t.dir != "" {
		dr = readDir(t.dir, t.limit)
	} else {
		dr.err = errors.New("the container names no call dir")
	}
	var (
		ins    *container.InspectResponse
		insErr error = cerrdefs.ErrNotFound
	)
	if dr.res != nil && dr.hasStderr {
		ev.Stderr = string(dr.stderr)
	}
	if t.ref != "" && engineErr == nil {
		if !(dr.res != nil && dr.hasStderr) {
			ev.Stderr = e.stderrPreview(ctx, t.ref)
		}
		// The container's state matters only without a result, or to tell
		// an OOM kill (saves a round trip on the common path).
		if dr.res == nil || dr.res.ExitCode == 137 {
			ictx, cancel := context.WithTimeout(ctx, 10*time.Second)
			r, err := e.cli.ContainerInspect(ictx, t.ref)
			cancel()
			if insErr = err; err == nil {
				ins = &r
			}
		}
	}
	if r := dr.res; r != nil {
		ev.Stdout, ev.ExitCode = dr.stdout, r.ExitCode
		ev.Truncated = r.Truncated || dr.trunc
		ev.StartedAt, ev.EndedAt = parseTime(r.StartedAt), parseTime(r.EndedAt)
	} else if ins != nil && ins.State != nil {
		ev.ExitCode = ins.State.ExitCode
		ev.StartedAt, ev.EndedAt = parseTime(ins.State.StartedAt), parseTime(ins.State.FinishedAt)
	}
	if ev.EndedAt.IsZero() {
		ev.EndedAt = time.Now()
	}
	fail := func(reason, msg string) executor.Event {
		ev.Kind, ev.Reason, ev.Message = executor.Failed, reason, e.hidePaths(msg)
		return ev
	}
	if c != nil {
		if reason, msg := c.stopped(); reason != "" {
			return fail(reason, msg)
		}
	}
	r := dr.res
	switch {
	case r == nil && dr.err != nil:
		return fail(api.ReasonLost, fmt.Sprintf("reading the result of the call: %v", dr.err))
	case dr.err != nil:
		// The function replaced a file of its result (a link, a FIFO, a
		// directory...): its own doing, and nothing of it is read.
		return fail(api.ReasonExit, fmt.Sprintf("the function tampered with its result: %v", dr.err))
	case r == nil && engineErr != nil:
		return fail(api.ReasonLost, fmt.Sprintf("lost the docker engine during the call: %v", engineErr))
	case r == nil && ins != nil && ins.State != nil && ins.State.OOMKilled:
		return fail(api.ReasonExit, oomMessage(*ins))
	case r == nil && ins != nil && ins.State != nil && ins.State.ExitCode == shim.ExitShimError &&
		strings.Contains(ev.Stderr, "hf-shim: writing result"):
		// The shim ran the command but found no room for its result: the
		// function filled its result dir (bounded), not the platform's doing.
		return fail(api.ReasonExit, "the function filled its result dir (/.hyperfunc/out is bounded to the stdout limit + 1 MiB and 64 files), leaving no room for the result")
	case r == nil && cerrdefs.IsNotFound(insErr):
		return fail(api.ReasonLost, fmt.Sprintf("container %s of the call is gone and left no result (engine restarted or container removed)", t.ref))
	case r == nil:
		return fail(api.ReasonLost, msgStoppedOutside+" before it recorded a result")
	case r.Error != "" && (r.ExitCode == 126 || r.ExitCode == 127):
		return fail(api.ReasonImage, r.Error) // the command is missing or cannot run in this image
	case r.Error != "":
		return fail(api.ReasonExecutor, "hf-shim: "+r.Error)
	case r.TimedOut:
		if t.timeout > 0 {
			return fail(api.ReasonTimeout, fmt.Sprintf("timeout after %s", t.timeout))
		}
		return fail(api.ReasonTimeout, "timeout")
	case ev.Truncated:
		return fail(api.ReasonOutput, outputMessage(t.limit))
	case r.ExternalSignal != "":
		return fail(api.ReasonLost, fmt.Sprintf("%s: the command got %s", msgStoppedOutside, r.ExternalSignal))
	case r.ExitCode == 137 && ins != nil && ins.State != nil && ins.State.OOMKilled:
		return fail(api.ReasonExit, oomMessage(*ins))
	case r.ExitCode != 0:
		return fail(api.ReasonExit, exitMessage(r.ExitCode, ev.Stderr))
	}
	ev.Kind = executor.Finished
	return ev
}

// stderrPreview reads the first bytes of the container's stderr (the
// command's, passed through by the shim) from its logs; "" when the engine
// does not answer.
func (e *Executor) stderrPreview(ctx context.Context, ref string) string {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	rc, err := e.cli.ContainerLogs(ctx, ref, container.LogsOptions{ShowStderr: true})
	if cerrdefs.IsNotFound(err) {
		return ""
	}
	if err != nil {
		e.log.Warn("reading the stderr of a call", "container", ref, "err", err)
		return ""
	}
	defer rc.Close()
	w := &capped{limit: executor.StderrPreviewBytes}
	if _, err := stdcopy.StdCopy(io.Discard, w, rc); err != nil {
		e.log.Warn("reading the stderr of a call", "container", ref, "err", err)
	}
	b, _ := w.result()
	return string(b)
}

// oomMessage explains an exit that the kernel's OOM killer caused.
func oomMessage(ins container.InspectResponse) string {
	mem := ""
	if ins.HostConfig != nil && ins.HostConfig.Memory > 0 {
		mem = fmt.Sprintf(" (limit %s)", executor.SizeText(ins.HostConfig.Memory))
	}
	return "exit code 137: out of memory" + mem
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
