package nomadjob

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/hyperfunc/hyperfunc/api"
	"github.com/hyperfunc/hyperfunc/executor"
	"github.com/hyperfunc/hyperfunc/shim"
)

// The task can write alloc/data and alloc/logs (they are mounted into its
// sandbox), and Nomad's client reads them on the host, as root, following
// symbolic links: fs/stat reports a link's target, fs/cat and fs/logs read
// through it, only fs/ls shows the link (Nomad 1.6.5, measured). A function
// that leaves alloc/data/stdout -> /etc/shadow, or replaces alloc/data by
// a link to a host directory, would have the executor hand a host file
// back as its output. So before reading anything of an allocation the
// executor lists the directories it reads from and refuses anything but
// plain directories and regular files.
//
// The check is only sound on a terminal allocation: with every task dead
// nothing can swap a file between the listing and the read. Calls are
// therefore collected at the allocation's end, warm ones too (not when
// result.json appears, as the local executor can, which reads with
// O_NOFOLLOW from the host).

// errUnsafeFile: the task left a link or a special file where the
// executor reads.
var errUnsafeFile = errors.New("the function left a link, a special file or too many files in its allocation directory; its outputs are not read")

// readFrom names, per directory the executor reads, the entries that must
// be regular files when present (a prefix ends in ".").
var readFrom = map[string][]string{
	"alloc/data": {shim.ResultFile, shim.StdoutFile, shim.StderrFile},
	"alloc/logs": {TaskName + ".stdout.", TaskName + ".stderr."},
}

// checkAllocFiles lists alloc, alloc/data and alloc/logs of a terminal
// allocation and answers errUnsafeFile (wrapped, naming the entry) when a
// directory the executor reads is not a plain directory or a file it
// reads is not a regular file; other errors are Nomad's.
func (e *Executor) checkAllocFiles(ctx context.Context, allocID string) error {
	top, err := e.n.List(ctx, allocID, "alloc")
	if errors.Is(err, ErrListingTooLarge) {
		return fmt.Errorf("%w (%v)", errUnsafeFile, err)
	}
	if err != nil {
		return err
	}
	for _, fi := range top {
		if _, read := readFrom["alloc/"+fi.Name]; read && (!fi.IsDir || !strings.HasPrefix(fi.FileMode, "d")) {
			return fmt.Errorf("%w (alloc/%s is %s)", errUnsafeFile, fi.Name, fi.FileMode)
		}
	}
	for dir, names := range readFrom {
		list, err := e.n.List(ctx, allocID, dir)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if errors.Is(err, ErrListingTooLarge) {
			return fmt.Errorf("%w (%v)", errUnsafeFile, err)
		}
		if err != nil {
			return err
		}
		for _, fi := range list {
			if read(fi.Name, names) && (fi.IsDir || !strings.HasPrefix(fi.FileMode, "-")) {
				return fmt.Errorf("%w (%s/%s is %s)", errUnsafeFile, dir, fi.Name, fi.FileMode)
			}
		}
	}
	return nil
}

// refuseUnsafe is checkAllocFiles before a read of a call's outputs: a
// Failed event for the call when the task left something unsafe there
// (the outputs are not read), nil when they may be read; other errors are
// Nomad's.
func (e *Executor) refuseUnsafe(ctx context.Context, callID, child, allocID string) (*executor.Event, error) {
	err := e.checkAllocFiles(ctx, allocID)
	if errors.Is(err, errUnsafeFile) {
		e.log.Warn("a call's allocation holds a link or special file where its outputs are read; failing it", "call", callID, "alloc", allocID, "err", err)
		return &executor.Event{CallID: callID, Ref: child, Kind: executor.Failed, Reason: api.ReasonExecutor, Message: err.Error(), EndedAt: time.Now()}, nil
	}
	return nil, err
}

func read(name string, names []string) bool {
	for _, n := range names {
		if name == n || strings.HasSuffix(n, ".") && strings.HasPrefix(name, n) {
			return true
		}
	}
	return false
}
