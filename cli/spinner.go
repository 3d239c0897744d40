package cli

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"
)

// isTerminal reports whether v is an *os.File open on a character device
// (a terminal, or /dev/null). Pipes, files and in-memory buffers are not.
func isTerminal(v any) bool {
	f, ok := v.(*os.File)
	if !ok || f == nil {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

const spinnerInterval = 200 * time.Millisecond

var spinnerFrames = []string{"⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"}

// spinner redraws one status line ("⠋ call 218b... RUNNING 3.2s") on a
// terminal every 200ms and clears it when stopped.
type spinner struct {
	w     io.Writer
	start time.Time
	now   func() time.Time

	mu    sync.Mutex
	label string

	stop chan struct{}
	done chan struct{}
}

// startSpinner starts a spinner on w when enabled; otherwise it returns a
// spinner whose methods do nothing.
func startSpinner(w io.Writer, enabled bool, now func() time.Time, label string) *spinner {
	if !enabled {
		return nil
	}
	s := &spinner{w: w, start: now(), now: now, label: label, stop: make(chan struct{}), done: make(chan struct{})}
	go s.loop()
	return s
}

// setLabel changes the text shown before the elapsed time.
func (s *spinner) setLabel(label string) {
	if s == nil {
		return
	}
	s.mu.Lock()
	s.label = label
	s.mu.Unlock()
}

func (s *spinner) loop() {
	defer close(s.done)
	t := time.NewTicker(spinnerInterval)
	defer t.Stop()
	for i := 0; ; i++ {
		s.draw(i)
		select {
		case <-s.stop:
			fmt.Fprint(s.w, "\r\033[K")
			return
		case <-t.C:
		}
	}
}

func (s *spinner) draw(i int) {
	s.mu.Lock()
	label := s.label
	s.mu.Unlock()
	elapsed := s.now().Sub(s.start).Truncate(100 * time.Millisecond)
	fmt.Fprintf(s.w, "\r\033[K%s %s %s", spinnerFrames[i%len(spinnerFrames)], label, fmtElapsed(elapsed))
}

// Stop clears the line; it returns once the line is cleared.
func (s *spinner) Stop() {
	if s == nil {
		return
	}
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	<-s.done
}

func fmtElapsed(d time.Duration) string {
	if d < time.Minute {
		return fmt.Sprintf("%.1fs", d.Seconds())
	}
	return d.Truncate(time.Second).String()
}
