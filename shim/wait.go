package shim

import (
	"errors"
	"io"
	"os"
	"time"
)

// WaitPoll is how often a pre-started (warm) shim looks for its envelope
// when no doorbell rang. The agent writes the envelope into a bind mount
// from the host side, which inotify inside gVisor does not see; a stat
// every few milliseconds would find it fast but costs gVisor's sentry a
// wakeup each time (two sandboxes polling at 5 ms made a concurrent
// `docker run` ~70% slower on two cores), so the agent rings a doorbell
// (a byte on the container's stdin) after writing it, and the poll only
// covers a doorbell that never rang (a leader that died in between).
const WaitPoll = 250 * time.Millisecond

// ErrWaitStopped: a signal came before the envelope did (docker stop or
// kill of a warm container): nothing ran and nothing is written.
var ErrWaitStopped = errors.New("stopped before the call's envelope arrived")

// WaitFor blocks until path exists (the agent writes it atomically, so
// existence means complete) or a signal arrives on stop. It looks at each
// byte read from bell (the doorbell; nil or EOF: none) and every poll.
func WaitFor(path string, poll time.Duration, bell io.Reader, stop <-chan os.Signal) error {
	if poll <= 0 {
		poll = WaitPoll
	}
	rang := make(chan struct{}, 1)
	if bell != nil {
		go func() {
			b := make([]byte, 64)
			for {
				if _, err := bell.Read(b); err != nil {
					return // EOF (no stdin): the poll alone remains
				}
				select {
				case rang <- struct{}{}:
				default:
				}
			}
		}()
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
		case <-rang:
		case <-t.C:
		}
	}
}
