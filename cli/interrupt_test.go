package cli_test

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/hyperfunc/hyperfunc/cli"
)

// lineWriter signals on lines once it has seen n newlines.
type lineWriter struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	n     int
	lines chan struct{}
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	before := strings.Count(w.buf.String(), "\n")
	w.buf.Write(p)
	if before < w.n && strings.Count(w.buf.String(), "\n") >= w.n {
		close(w.lines)
	}
	return len(p), nil
}

func (w *lineWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// runUntilBlocked runs the CLI and cancels its context once the fake agent
// holds the request the command waits on and the CLI printed lines lines.
func runUntilBlocked(t *testing.T, f *fakeAPI, lines int, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stdout := &lineWriter{n: lines, lines: make(chan struct{})}
	if lines == 0 {
		close(stdout.lines)
	}
	go func() {
		<-f.blocked
		<-stdout.lines
		cancel()
	}()
	var stderr bytes.Buffer
	env := map[string]string{"HYPER_ADDR": f.srv.URL}
	code := cli.RunContext(ctx, args, nil, stdout, &stderr, func(k string) string { return env[k] })
	return result{stdout: stdout.String(), stderr: stderr.String(), code: code}
}

func TestInterruptedWait(t *testing.T) {
	f := newFakeAPI(t)
	f.hold = true
	f.blockWait = true
	f.run(t, nil, nil, "func", "create", "--name", "slow", "ubuntu", "echo").must(t)
	id := callIDLine.FindStringSubmatch(f.run(t, nil, nil, "func", "call", "slow").must(t).stdout)[1]
	r := runUntilBlocked(t, f, 0, "func", "get", "--wait", id)
	if r.code != cli.ExitInterrupted || r.stdout != "" || r.stderr != "" {
		t.Errorf("interrupted get --wait: %+v", r)
	}
}

func TestLogsFollowInterrupted(t *testing.T) {
	f := newFakeAPI(t)
	f.run(t, nil, nil, "func", "create", "--name", "hello", "ubuntu", "echo", "hi").must(t)
	f.run(t, nil, nil, "func", "call", "hello").must(t)
	f.blockWait = true
	r := runUntilBlocked(t, f, 4, "func", "logs", "-f", "hello")
	if r.code != 0 || strings.Count(r.stdout, "\n") != 4 || r.stderr != "" {
		t.Errorf("interrupted logs -f: %+v", r)
	}
}
