package localexec_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/hyperfunc/hyperfunc/api"
	"github.com/hyperfunc/hyperfunc/executor"
	"github.com/hyperfunc/hyperfunc/internal/testimages"
)

func randomBytes(t *testing.T, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func TestEchoBinaryStdinAtLimit(t *testing.T) {
	t.Parallel()
	e, cli, img := setup(t)
	// DESIGN.md: every call runs under gVisor. An engine without runsc
	// falls back to runc (loudly); in the tests that is a failure.
	if rt := e.Runtime(); rt != "runsc" {
		t.Fatalf("runtime %q: register runsc with the engine (scripts/setup-docker.sh)", rt)
	}
	s := spec(t, cli, img, "cat")
	s.Stdin = randomBytes(t, 1<<20) // exactly the limit
	ev := run(t, e, s)
	if ev.Kind != executor.Finished || ev.Truncated {
		t.Fatalf("got %v %q %q", ev.Kind, ev.Reason, ev.Message)
	}
	if sha256.Sum256(ev.Stdout) != sha256.Sum256(s.Stdin) {
		t.Fatalf("stdout differs from stdin: %d bytes back of %d", len(ev.Stdout), len(s.Stdin))
	}
	// Nothing goes before the dispatcher says the outcome is recorded:
	// after a second call ran to its end on the same executor (time it had
	// to misbehave, measured by work done rather than a fixed sleep), the
	// first call's container and dir are still there.
	other := spec(t, cli, img, "true")
	run(t, e, other)
	kept(t, cli, s.CallID)
	release(t, e, cli, executor.Handle{CallID: other.CallID})
	release(t, e, cli, executor.Handle{CallID: s.CallID})
}

func TestStdoutOneBytePastLimit(t *testing.T) {
	t.Parallel()
	e, cli, img := setup(t)
	s := spec(t, cli, img, "cat")
	s.Stdin = randomBytes(t, 1<<20+1)
	ev := run(t, e, s)
	wantFailed(t, ev, api.ReasonOutput, "output exceeds 1MiB")
	if !ev.Truncated || !bytes.Equal(ev.Stdout, s.Stdin[:1<<20]) {
		t.Fatalf("truncated=%v, %d bytes kept; want the first 1MiB", ev.Truncated, len(ev.Stdout))
	}
	release(t, e, cli, executor.Handle{CallID: s.CallID})
}

func TestEndlessOutputIsKilled(t *testing.T) {
	t.Parallel()
	e, cli, img := setup(t)
	s := spec(t, cli, img, "sh", "-c", "while true; do cat /testdata/bytes.bin; done")
	s.StdoutLimit = 64 << 10
	ev := run(t, e, s)
	wantFailed(t, ev, api.ReasonOutput, "output exceeds 64KiB")
	if !bytes.Equal(ev.Stdout, testimages.BytesContent()[:64<<10]) {
		t.Fatalf("kept %d bytes, not the first 64KiB", len(ev.Stdout))
	}
	release(t, e, cli, executor.Handle{CallID: s.CallID})
}

func TestNonZeroExit(t *testing.T) {
	t.Parallel()
	e, cli, img := setup(t)
	s := spec(t, cli, img, "sh", "-c", "echo partial; echo oops >&2; echo more >&2; exit 3")
	ev := run(t, e, s)
	wantFailed(t, ev, api.ReasonExit, "exit code 3: oops")
	if ev.ExitCode != 3 || ev.Stderr != "oops\nmore\n" || string(ev.Stdout) != "partial\n" {
		t.Fatalf("exit=%d stderr=%q stdout=%q", ev.ExitCode, ev.Stderr, ev.Stdout)
	}
	release(t, e, cli, executor.Handle{CallID: s.CallID})
}

func TestMissingImage(t *testing.T) {
	t.Parallel()
	e, cli, _ := setup(t)
	img, err := testimages.EnsureMissing(context.Background(), cli)
	if err != nil {
		t.Fatal(err)
	}
	s := spec(t, cli, img, "true")
	h := start(t, e, s)
	if h.CallID != s.CallID || h.Ref != "" {
		t.Fatalf("handle %+v", h)
	}
	ev := final(t, e, s.CallID)
	wantFailed(t, ev, api.ReasonImage, img)
	t.Logf("pull error: %s", ev.Message)
	if err := e.Pull(context.Background(), img); err == nil || !strings.Contains(err.Error(), img) || !errors.Is(err, executor.ErrNoImage) {
		t.Fatalf("Pull: %v", err)
	}
	// The registry's own reply stays in the agent's log: a tenant could
	// point the engine at any host and read what it answered.
	for _, leak := range []string{"manifest", "404", "lookup", "response"} {
		if strings.Contains(ev.Message, leak) {
			t.Errorf("the message %q passes on the registry's answer (%q)", ev.Message, leak)
		}
	}
	release(t, e, cli, executor.Handle{CallID: s.CallID})
}

func TestTimeout(t *testing.T) {
	t.Parallel()
	e, cli, img := setup(t)
	s := spec(t, cli, img, "sleep", "60")
	s.Function.Timeout = 2 * time.Second
	// sleep 60 never ends first: the reason proves the timeout stopped
	// it; how fast is not asserted (a loaded machine is slow).
	ev := run(t, e, s)
	wantFailed(t, ev, api.ReasonTimeout, "timeout after 2s")
	release(t, e, cli, executor.Handle{CallID: s.CallID})
}

func TestCancel(t *testing.T) {
	t.Parallel()
	e, cli, img := setup(t)
	s := spec(t, cli, img, "sleep", "60")
	h := start(t, e, s)
	next(t, e, s.CallID, time.Minute, executor.Running)
	if err := e.Cancel(context.Background(), h); err != nil {
		t.Fatal(err)
	}
	wantFailed(t, final(t, e, s.CallID), api.ReasonCancelled, "")
	release(t, e, cli, executor.Handle{CallID: s.CallID})
}

func TestEnvEntrypointWorkdir(t *testing.T) {
	t.Parallel()
	e, cli, img := setup(t)
	s := spec(t, cli, img, "-c", "env; pwd")
	s.Function.Entrypoint = []string{"/bin/sh"}
	s.Function.Workdir = "/testdata"
	s.Env["HTTP_CONTENT_TYPE"] = "text/plain; charset=utf-8"
	ev := run(t, e, s)
	if ev.Kind != executor.Finished {
		t.Fatalf("%v %s", ev.Kind, ev.Message)
	}
	for _, want := range []string{
		"HYPER_CALL_ID=" + s.CallID + "\n", "HYPER_FUNC_NAME=fn\n",
		"HTTP_CONTENT_TYPE=text/plain; charset=utf-8\n", "/testdata\n",
	} {
		if !strings.Contains(string(ev.Stdout), want) {
			t.Errorf("stdout %q lacks %q", ev.Stdout, want)
		}
	}
	release(t, e, cli, executor.Handle{CallID: s.CallID})
}

func TestStartIsIdempotent(t *testing.T) {
	t.Parallel()
	e, cli, img := setup(t)
	s := spec(t, cli, img, "sh", "-c", "echo ran; sleep 2")
	var wg sync.WaitGroup
	hs := make([]executor.Handle, 3)
	errs := make([]error, 3)
	for i := range hs {
		wg.Add(1)
		go func() { // no t.Fatal off the test goroutine: errors come back
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			hs[i], errs[i] = e.Start(ctx, s)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("start %d: %v", i, err)
		}
	}
	if hs[0].Ref == "" || hs[0] != hs[1] || hs[1] != hs[2] {
		t.Fatalf("handles differ: %+v", hs)
	}
	if n := len(containers(t, cli, s.CallID)); n != 1 {
		t.Fatalf("%d containers for one call", n)
	}
	// A second executor on the same engine (a restarted agent) finds the
	// running container by name and does not run the call again.
	e2 := newExec(t, cli)
	if h := start(t, e2, s); h != hs[0] {
		t.Fatalf("second executor: %+v, want %+v", h, hs[0])
	}
	if n := len(containers(t, cli, s.CallID)); n != 1 {
		t.Fatalf("%d containers for one call", n)
	}
	if ev := final(t, e, s.CallID); ev.Kind != executor.Finished || string(ev.Stdout) != "ran\n" {
		t.Fatalf("%v %q %s", ev.Kind, ev.Stdout, ev.Message)
	}
	if ev := final(t, e2, s.CallID); string(ev.Stdout) != "ran\n" {
		t.Fatalf("second executor saw %v %q %s", ev.Kind, ev.Stdout, ev.Message)
	}
	release(t, e, cli, executor.Handle{CallID: s.CallID})
}

// TestImageCmd: a function without a command runs the image's CMD, as
// `docker run` does (the busybox image's is ["sh"]), here fed a script on
// stdin, small enough to travel inside the envelope.
func TestImageCmd(t *testing.T) {
	t.Parallel()
	e, cli, img := setup(t)
	s := spec(t, cli, img)
	s.Stdin = []byte("echo from the image cmd; echo to stderr >&2\n")
	ev := run(t, e, s)
	if ev.Kind != executor.Finished || string(ev.Stdout) != "from the image cmd\n" || ev.Stderr != "to stderr\n" {
		t.Fatalf("%v %q stderr %q %s", ev.Kind, ev.Stdout, ev.Stderr, ev.Message)
	}
	release(t, e, cli, executor.Handle{CallID: s.CallID})
}

// TestMissingCommand: a command the image lacks fails the call (reason
// image), through the shim's exit code 127.
func TestMissingCommand(t *testing.T) {
	t.Parallel()
	e, cli, img := setup(t)
	s := spec(t, cli, img, "no-such-command", "x")
	wantFailed(t, run(t, e, s), api.ReasonImage, "no-such-command")
	release(t, e, cli, executor.Handle{CallID: s.CallID})
}

// TestStoppedOutside (bug 2): a container stopped by someone else (docker
// stop; dockerd does the same when it shuts down) ends the call lost, with
// a message that says so, not "exit code 143" as if the function failed.
func TestStoppedOutside(t *testing.T) {
	t.Parallel()
	e, cli, img := setup(t)
	s := spec(t, cli, img, "sleep", "60")
	h := start(t, e, s)
	next(t, e, s.CallID, time.Minute, executor.Running)
	timeout := 10
	if err := cli.ContainerStop(context.Background(), h.Ref, container.StopOptions{Timeout: &timeout}); err != nil {
		t.Fatal(err)
	}
	ev := final(t, e, s.CallID)
	wantFailed(t, ev, api.ReasonLost, "stopped outside hyperfunc (engine restart or docker stop)")
	t.Logf("stopped outside: %s", ev.Message)
	release(t, e, cli, h)
}

// TestRelease: the container and the call dir stay until Release, then go;
// a second Release is a no-op.
func TestRelease(t *testing.T) {
	t.Parallel()
	e, cli, img := setup(t)
	s := spec(t, cli, img, "echo", "hi")
	h := start(t, e, s)
	if ev := final(t, e, s.CallID); ev.Kind != executor.Finished {
		t.Fatalf("%v %s", ev.Kind, ev.Message)
	}
	kept(t, cli, s.CallID)
	release(t, e, cli, h)
	if err := e.Release(context.Background(), []executor.Handle{h}); err != nil {
		t.Fatalf("second release: %v", err)
	}
}
