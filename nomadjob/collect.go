package nomadjob

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	nomad "github.com/hashicorp/nomad/api"

	"github.com/hyperfunc/hyperfunc/api"
	"github.com/hyperfunc/hyperfunc/executor"
	"github.com/hyperfunc/hyperfunc/shim"
)

// maxResultFile bounds result.json.
const maxResultFile = 64 << 10

// errNotTerminal: collect found the allocation still pending or running.
var errNotTerminal = errors.New("the allocation has not ended")

// collect reads a terminal allocation's outcome: the shim's result.json and
// stdout from alloc/data (stat first: fs/cat of a missing file answers 200
// with an error text, fixture 16), the stderr preview from the log, and the
// task events for what the shim cannot say (driver failure, artifact, OOM,
// lost node).
func (e *Executor) collect(ctx context.Context, callID, child, allocID string, limit int64) (executor.Event, error) {
	alloc, err := e.n.Allocation(ctx, allocID)
	if err != nil {
		return executor.Event{}, err
	}
	if !isTerminal(alloc.ClientStatus) {
		// Whatever said it ended (an event, a list stub), the allocation
		// itself does not: an outcome decided now would fail a call that is
		// still to run (seen on the real agent: "allocation pending:
		// Downloading image"). Watch it on instead.
		return executor.Event{}, fmt.Errorf("%w (allocation %s is %s)", errNotTerminal, allocID, alloc.ClientStatus)
	}
	var gone *errLaterTryGone
	if next, err := e.dispatchAgain(ctx, callID, child, alloc); errors.As(err, &gone) {
		return lostEvent(&call{id: callID, child: child}, gone.Error()), nil
	} else if errors.Is(err, errStoppedBeforeTry) {
		return canceledEvent(callID, child), nil
	} else if err != nil {
		return executor.Event{}, err
	} else if next != "" {
		return executor.Event{}, &errDispatchedAgain{Child: next}
	}
	if alloc.DesiredStatus == nomad.AllocDesiredStatusStop && !isWarmChild(child) {
		// Stopped while it ran (Nomad leaves a terminal allocation's
		// desired status alone): a Cancel's stop, whose report may come
		// after this collect (it reads the child's tries first). Its cut
		// task (a download aborted, a command killed) is not the call's
		// outcome: canceled, as Reconcile says of the same child.
		if job, err := e.n.JobInfo(ctx, child); err == nil && deref(job.Stop) {
			return canceledEvent(callID, child), nil
		} else if err != nil && !errors.Is(err, ErrNotFound) {
			return executor.Event{}, err
		}
	}
	var res *shim.Result
	var stdout []byte
	if alloc.ClientStatus != nomad.AllocClientStatusLost && taskStarted(alloc) {
		if ev, err := e.refuseUnsafe(ctx, callID, child, allocID); err != nil {
			return executor.Event{}, err
		} else if ev != nil {
			return *ev, nil
		}
		res, stdout, err = e.readResult(ctx, allocID, limit)
		if err != nil {
			return executor.Event{}, err
		}
	}
	ev := Outcome(alloc, res, stdout, limit)
	ev.CallID, ev.Ref = callID, child
	if alloc.ClientStatus == nomad.AllocClientStatusLost || !taskStarted(alloc) {
		return ev, nil
	}
	// The shim's preview first (Nomad's log stream loses the output of
	// short tasks, nomad#6931); the log when the shim kept none.
	stderr, ok, err := e.shimStderr(ctx, allocID)
	if err != nil {
		return executor.Event{}, err
	}
	if !ok {
		stderr, err = e.n.Logs(ctx, allocID, TaskName, "stderr", executor.StderrPreviewBytes)
		if err != nil && !errors.Is(err, ErrRefused) {
			return executor.Event{}, err
		}
	}
	ev.Stderr = preview(stderr)
	if res == nil && ev.Kind == executor.Finished {
		// No result file (not run through the shim?): the log stream is the
		// fallback for stdout (it may lose very short outputs, nomad#6931).
		out, err := e.n.Logs(ctx, allocID, TaskName, "stdout", limit)
		if err != nil && !errors.Is(err, ErrRefused) {
			return executor.Event{}, err
		}
		if int64(len(out)) > limit {
			ev = outputOver(ev, out[:limit], limit)
		} else {
			ev.Stdout = out
		}
	}
	return ev, nil
}

// readResult reads result.json and stdout; a nil result means the shim left
// none.
func (e *Executor) readResult(ctx context.Context, allocID string, limit int64) (*shim.Result, []byte, error) {
	ok, err := e.exists(ctx, allocID, ResultFilePath)
	if err != nil || !ok {
		return nil, nil, err
	}
	raw, err := e.n.Cat(ctx, allocID, ResultFilePath, maxResultFile)
	if err != nil {
		return nil, nil, err
	}
	res, err := DecodeResult(raw)
	if err != nil {
		e.log.Warn("unreadable result.json; using the task events", "alloc", allocID, "err", err)
		return nil, nil, nil
	}
	var stdout []byte
	if ok, err := e.exists(ctx, allocID, StdoutFilePath); err != nil {
		return nil, nil, err
	} else if ok {
		if stdout, err = e.n.Cat(ctx, allocID, StdoutFilePath, limit); err != nil {
			return nil, nil, err
		}
		if int64(len(stdout)) > limit {
			stdout = stdout[:limit]
			res.Truncated = true
		}
	}
	return res, stdout, nil
}

func (e *Executor) exists(ctx context.Context, allocID, path string) (bool, error) {
	fi, err := e.n.Stat(ctx, allocID, path)
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return fi != nil && !fi.IsDir, nil
}

// DecodeResult parses the shim's result.json.
func DecodeResult(raw []byte) (*shim.Result, error) {
	var r shim.Result
	if err := json.Unmarshal(raw, &r); err != nil {
		return nil, fmt.Errorf("result.json: %w", err)
	}
	if r.Version == 0 {
		return nil, errors.New("result.json: no version")
	}
	return &r, nil
}

func taskStarted(a *nomad.Allocation) bool {
	ts := a.TaskStates[TaskName]
	if ts == nil {
		return false
	}
	return !ts.StartedAt.IsZero() || findEvent(ts, nomad.TaskStarted) != nil || findEvent(ts, nomad.TaskTerminated) != nil
}

// Outcome turns a terminal allocation (and the shim's result, when there is
// one) into the call's final event. It is pure: the fixtures test it.
func Outcome(a *nomad.Allocation, res *shim.Result, stdout []byte, limit int64) executor.Event {
	ev := executor.Event{Kind: executor.Failed}
	ts := a.TaskStates[TaskName]
	if ts != nil {
		ev.StartedAt = ts.StartedAt
		ev.EndedAt = ts.FinishedAt
	}
	if ev.EndedAt.IsZero() {
		ev.EndedAt = time.Unix(0, a.ModifyTime)
	}
	if a.ClientStatus == nomad.AllocClientStatusLost {
		ev.Reason = api.ReasonLost
		ev.Message = fmt.Sprintf("allocation lost: node %s went down", nodeName(a))
		return ev
	}
	if ts != nil {
		if te := findEvent(ts, nomad.TaskDriverFailure); te != nil {
			ev.Reason = api.ReasonImage
			ev.Message = "Driver Failure: " + firstNonEmpty(te.DriverError, te.DisplayMessage, te.Details["driver_error"])
			return ev
		}
		if te := findEvent(ts, nomad.TaskArtifactDownloadFailed); te != nil {
			ev.Reason = api.ReasonExecutor
			ev.Message = "Failed Artifact Download: " + firstNonEmpty(te.DownloadError, te.DisplayMessage, te.Details["download_error"])
			return ev
		}
		for _, typ := range []string{nomad.TaskSetupFailure, nomad.TaskFailedValidation} {
			if te := findEvent(ts, typ); te != nil {
				ev.Reason = api.ReasonExecutor
				ev.Message = typ + ": " + firstNonEmpty(te.SetupError, te.ValidationError, te.DisplayMessage)
				return ev
			}
		}
		if te := findEvent(ts, nomad.TaskTerminated); te != nil && oomKilled(te) {
			ev.Reason = api.ReasonExit
			ev.ExitCode = exitCode(te, 137)
			ev.Message = fmt.Sprintf("OOM killed: the function went over its memory limit (%d MB)", memoryMB(a))
			ev.Stdout = stdout
			return ev
		}
	}
	if res != nil {
		ev.ExitCode = res.ExitCode
		ev.Stdout = stdout
		if t, err := time.Parse(time.RFC3339Nano, res.StartedAt); err == nil {
			ev.StartedAt = t
		}
		if t, err := time.Parse(time.RFC3339Nano, res.EndedAt); err == nil {
			ev.EndedAt = t
		}
		switch {
		case res.TimedOut:
			ev.Reason = api.ReasonTimeout
			ev.Message = "timeout"
			if !ev.StartedAt.IsZero() && ev.EndedAt.After(ev.StartedAt) {
				ev.Message = fmt.Sprintf("timeout after %s", ev.EndedAt.Sub(ev.StartedAt).Round(time.Millisecond))
			}
		case res.Truncated:
			return outputOver(ev, stdout, limit)
		case res.ExternalSignal != "" && res.ExitCode != 0:
			// Nomad (a stop, a drain, a client restart) signalled the task;
			// the function did not fail on its own.
			ev.Reason = api.ReasonLost
			ev.Message = "the task was stopped outside hyperfunc (Nomad stopped it or its node drained): the command got " + res.ExternalSignal
		case res.Error != "":
			ev.Reason = api.ReasonExit
			if ev.ExitCode == 0 {
				ev.ExitCode = 127
			}
			ev.Message = "hf-shim: " + res.Error
		case res.ExitCode != 0:
			ev.Reason = api.ReasonExit
			ev.Message = exitMessage(res.ExitCode, res.Signal)
		default:
			ev.Kind = executor.Finished
		}
		return ev
	}
	// No result file: the task events say how it ended.
	if ts != nil {
		if te := findEvent(ts, nomad.TaskTerminated); te != nil {
			ev.ExitCode = exitCode(te, 0)
			if ev.ExitCode != 0 || te.Signal != 0 {
				ev.Reason = api.ReasonExit
				ev.Message = exitMessage(ev.ExitCode, signalName(te.Signal))
				return ev
			}
			if a.ClientStatus == nomad.AllocClientStatusComplete {
				ev.Kind = executor.Finished
				return ev
			}
		}
	}
	if a.ClientStatus == nomad.AllocClientStatusComplete {
		ev.Kind = executor.Finished
		return ev
	}
	ev.Reason = api.ReasonExecutor
	ev.Message = "allocation " + a.ClientStatus + ": " + firstNonEmpty(lastMessage(ts), a.ClientDescription, "no task events")
	return ev
}

func outputOver(ev executor.Event, stdout []byte, limit int64) executor.Event {
	ev.Kind = executor.Failed
	ev.Reason = api.ReasonOutput
	ev.Truncated = true
	if int64(len(stdout)) > limit {
		stdout = stdout[:limit]
	}
	ev.Stdout = stdout
	ev.Message = executor.OutputExceeds(limit)
	return ev
}

func exitMessage(code int, signal string) string {
	if signal != "" && signal != "0" {
		return fmt.Sprintf("exit code %d (signal %s)", code, signal)
	}
	return fmt.Sprintf("exit code %d", code)
}

func signalName(s int) string {
	if s == 0 {
		return ""
	}
	return fmt.Sprint(s)
}

func findEvent(ts *nomad.TaskState, typ string) *nomad.TaskEvent {
	if ts == nil {
		return nil
	}
	for i := len(ts.Events) - 1; i >= 0; i-- {
		if ts.Events[i] != nil && ts.Events[i].Type == typ {
			return ts.Events[i]
		}
	}
	return nil
}

func oomKilled(te *nomad.TaskEvent) bool {
	return te.Details["oom_killed"] == "true" ||
		strings.Contains(te.DisplayMessage, "OOM Killed") ||
		strings.Contains(te.Message, "OOM Killed")
}

func exitCode(te *nomad.TaskEvent, dflt int) int {
	if te.ExitCode != 0 {
		return te.ExitCode
	}
	var c int
	if _, err := fmt.Sscan(te.Details["exit_code"], &c); err == nil && c != 0 {
		return c
	}
	return dflt
}

func lastMessage(ts *nomad.TaskState) string {
	if ts == nil {
		return ""
	}
	for i := len(ts.Events) - 1; i >= 0; i-- {
		if m := ts.Events[i].DisplayMessage; m != "" {
			return m
		}
	}
	return ""
}

func nodeName(a *nomad.Allocation) string {
	if a.NodeName != "" {
		return a.NodeName
	}
	return a.NodeID
}

func memoryMB(a *nomad.Allocation) int {
	if tr := a.TaskResources[TaskName]; tr != nil && tr.MemoryMB != nil {
		return *tr.MemoryMB
	}
	if a.Resources != nil && a.Resources.MemoryMB != nil {
		return *a.Resources.MemoryMB
	}
	return 0
}

func firstNonEmpty(ss ...string) string {
	for _, s := range ss {
		if s != "" {
			return s
		}
	}
	return ""
}

// preview bounds the stderr preview to StderrPreviewBytes.
func preview(b []byte) string {
	if len(b) > executor.StderrPreviewBytes {
		b = b[:executor.StderrPreviewBytes]
	}
	return string(b)
}
