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
// (a byte on the container's stdin, or SIGUSR1 from a Nomad template's
// change_signal) after writing it, and the poll only covers a doorbell
// that never rang (a leader that died in between, a signal lost).
const WaitPoll = 250 * time.Millisecond

// ErrWaitStopped: a signal came before the envelope did (docker stop or
// kill of a warm container): nothing ran and nothing is written.
var ErrWaitStopped = errors.New("stopped before the call's envelope arrived")

// WaitFor blocks until path exists with some content, or a signal arrives
// on stop. Both writers replace the file whole (the local agent links it in,
// Nomad's template renders to a temporary file and renames it), so content
// means complete; an empty file is a Nomad template rendered before its
// variable existed. It looks at each byte read from bell (the local
// doorbell; nil or EOF: none), each signal on wake (SIGUSR1, Nomad's
// doorbell; nil: none) and every poll.
func WaitFor(path string, poll time.Duration, bell io.Reader, wake <-chan os.Signal, stop <-chan os.Signal) error {
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
		if fi, err := os.Lstat(path); err == nil && fi.Size() > 0 {
			return nil
		}
		select {
		case <-stop:
			return ErrWaitStopped
		case <-rang:
		case <-wake:
		case <-t.C:
		}
	}
}
