package shim

import (
	"fmt"
	"os"
	"sync"
	"syscall"
	"time"
)

// stderrTee gives the command a pipe for its stderr, copies everything to
// the shim's own stderr (Docker's logs, Nomad's task log) and keeps the
// first limit bytes for ResultDir/stderr.
type stderrTee struct {
	r      *os.File
	done   chan struct{}
	mu     sync.Mutex
	keep   []byte
	limit  int64
	closed bool
}

// stderrTee returns the file to give the command as its stderr, and the
// tee when limit > 0 (nil: the command gets the shim's stderr itself).
func (r *Runner) stderrTee(limit int64) (*os.File, *stderrTee, error) {
	if limit <= 0 {
		return r.stderr(), nil, nil
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, nil, fmt.Errorf("stderr pipe: %w", err)
	}
	t := &stderrTee{r: pr, done: make(chan struct{}), limit: limit}
	dst := r.stderr()
	go func() {
		defer close(t.done)
		buf := make([]byte, 32<<10)
		for {
			n, err := pr.Read(buf)
			if n > 0 {
				_, _ = dst.Write(buf[:n])
				t.mu.Lock()
				if room := t.limit - int64(len(t.keep)); room > 0 {
					t.keep = append(t.keep, buf[:min(int64(n), room)]...)
				}
				t.mu.Unlock()
			}
			if err != nil {
				return // EOF, or the pipe closed by wait
			}
		}
	}()
	return pw, t, nil
}

// wait waits for the command's stderr to reach EOF, or until deadline
// fires (a daemonized grandchild holds it open), then stops the copy.
func (t *stderrTee) wait(deadline <-chan time.Time) {
	select {
	case <-t.done:
	case <-deadline:
		t.close()
		<-t.done
	}
}

func (t *stderrTee) close() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.closed {
		t.closed = true
		_ = t.r.Close()
	}
}

// write puts the kept bytes in dir/StderrFile, synced (result.json, which
// follows, must find it complete).
func (t *stderrTee) write(dir string) error {
	t.mu.Lock()
	keep := append([]byte(nil), t.keep...)
	t.mu.Unlock()
	// O_NONBLOCK: a FIFO the command left at that name (nobody reads it
	// any more) fails the open (ENXIO) instead of blocking the shim for
	// ever, with no result.json and past the call's timeout; anything but
	// a regular file is refused.
	f, err := os.OpenFile(joinPath(dir, StderrFile), os.O_WRONLY|os.O_CREATE|os.O_TRUNC|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0o644)
	if err != nil {
		return fmt.Errorf("writing the stderr preview: %w", err)
	}
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		_ = f.Close()
		return fmt.Errorf("writing the stderr preview: %s is not a regular file", StderrFile)
	}
	_, err = f.Write(keep)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("writing the stderr preview: %w", err)
	}
	return nil
}
