package shim

import (
	"errors"
	"os"
	"time"
)

// WaitPoll is how often a pre-started (warm) shim looks for its envelope.
// The agent writes the envelope into a bind mount from the host side, which
// inotify inside gVisor does not see, so the shim polls: one stat per
// interval, ~2.5 ms of added latency on average, a negligible CPU cost.
const WaitPoll = 5 * time.Millisecond

// ErrWaitStopped: a signal came before the envelope did (docker stop or
// kill of a warm container): nothing ran and nothing is written.
var ErrWaitStopped = errors.New("stopped before the call's envelope arrived")

// WaitFor blocks until path exists (the agent writes it atomically, by
// rename, so existence means complete) or a signal arrives on stop. It is
// the warm mode of hf-shim (-wait): the sandbox boots before its call, and
// the call's envelope is handed over by writing the file.
func WaitFor(path string, poll time.Duration, stop <-chan os.Signal) error {
	if poll <= 0 {
		poll = WaitPoll
	}
	t := time.NewTicker(poll)
	defer t.Stop()
	for {
		if _, err := os.Lstat(path); err == nil {
			return nil
		}
		select {
		case <-stop:
			return ErrWaitStopped
		case <-t.C:
		}
	}
}
