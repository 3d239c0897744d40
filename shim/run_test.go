package shim

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// envelope returns a valid envelope for argv with a fresh result dir.
func envelope(t *testing.T, argv ...string) *Envelope {
	t.Helper()
	return &Envelope{Version: EnvelopeVersion, CallID: "c-" + t.Name(), Argv: argv,
		StdoutLimit: 1 << 20, ResultDir: t.TempDir()}
}

func testRunner(t *testing.T) *Runner {
	t.Helper()
	return &Runner{BaseEnv: []string{"PATH=/usr/local/bin:/usr/bin:/bin", "BASE=1"}, KillGrace: 200 * time.Millisecond}
}

func stdoutOf(t *testing.T, env *Envelope) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(env.ResultDir, StdoutFile))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func sh(script string) []string { return []string{"sh", "-c", script} }

func TestRunEcho(t *testing.T) {
	env := envelope(t, "echo", "Hello", "World")
	res := testRunner(t).Run(env)
	if res.Error != "" || res.ExitCode != 0 || res.Signal != "" || res.Truncated || res.TimedOut {
		t.Fatalf("result %+v", res)
	}
	if got := string(stdoutOf(t, env)); got != "Hello World\n" {
		t.Fatalf("stdout %q", got)
	}
	if res.StdoutBytes != 12 || res.CallID != env.CallID || res.Version != EnvelopeVersion {
		t.Fatalf("result %+v", res)
	}
	start, err1 := time.Parse(time.RFC3339Nano, res.StartedAt)
	end, err2 := time.Parse(time.RFC3339Nano, res.EndedAt)
	if err1 != nil || err2 != nil || end.Before(start) {
		t.Fatalf("timings %q %q", res.StartedAt, res.EndedAt)
	}
}

func TestRunStdin(t *testing.T) {
	random := make([]byte, 1<<20)
	if _, err := rand.Read(random); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "in")
	if err := os.WriteFile(file, random, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		set   func(*Envelope)
		input []byte
	}{
		{"inline", func(e *Envelope) { e.Stdin = []byte("hello\nworld") }, []byte("hello\nworld")},
		{"none", func(*Envelope) {}, nil},
		{"inline-binary", func(e *Envelope) { e.Stdin = random }, random},
		{"file-binary", func(e *Envelope) { e.StdinFile = file }, random},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := envelope(t, "cat")
			tc.set(env)
			res := testRunner(t).Run(env)
			if res.Error != "" || res.ExitCode != 0 || res.Truncated {
				t.Fatalf("result %+v", res)
			}
			got := stdoutOf(t, env)
			if sha256.Sum256(got) != sha256.Sum256(tc.input) || res.StdoutBytes != int64(len(tc.input)) {
				t.Fatalf("stdout: %d bytes, want %d identical bytes", len(got), len(tc.input))
			}
		})
	}
}

func TestRunStdinNotRead(t *testing.T) {
	env := envelope(t, "true")
	env.Stdin = bytes.Repeat([]byte("x"), 1<<20) // more than a pipe buffer
	res := testRunner(t).Run(env)
	if res.Error != "" || res.ExitCode != 0 {
		t.Fatalf("result %+v", res)
	}
}

func TestRunStdoutLimit(t *testing.T) {
	const limit = 100_000
	for _, tc := range []struct {
		name      string
		size      int
		truncated bool
	}{
		{"below", limit - 1, false},
		{"exact", limit, false},
		{"one-past", limit + 1, true},
		{"far-past", 10 * limit, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := make([]byte, tc.size)
			if _, err := rand.Read(in); err != nil {
				t.Fatal(err)
			}
			env := envelope(t, "cat")
			env.Stdin = in
			env.StdoutLimit = limit
			res := testRunner(t).Run(env)
			if res.Error != "" || res.Truncated != tc.truncated {
				t.Fatalf("result %+v", res)
			}
			// cat may finish writing before the kill lands.
			if !(res.ExitCode == 0 || tc.truncated && res.ExitCode == 128+int(syscall.SIGKILL)) {
				t.Fatalf("exit code %d", res.ExitCode)
			}
			want := in[:min(tc.size, limit)]
			if got := stdoutOf(t, env); !bytes.Equal(got, want) || res.StdoutBytes != int64(len(want)) {
				t.Fatalf("stdout: %d bytes, want the first %d", len(got), len(want))
			}
		})
	}
}

func TestRunStdoutLimitKills(t *testing.T) {
	env := envelope(t, sh("while :; do echo yyyyyyyyyyyyyyyyyyyy; done")...)
	env.StdoutLimit = 1000
	// The loop never ends on its own: the result says it was killed, and
	// a shim that did not kill it would hang (go test's timeout).
	res := testRunner(t).Run(env)
	if !res.Truncated || res.Signal != "SIGKILL" || res.ExitCode != 137 || res.StdoutBytes != 1000 {
		t.Fatalf("result %+v", res)
	}
	if n := len(stdoutOf(t, env)); n != 1000 {
		t.Fatalf("stdout %d bytes", n)
	}
}

func TestRunExitCode(t *testing.T) {
	for _, code := range []int{0, 1, 3, 42, 255} {
		env := envelope(t, sh("echo out; echo err >&2; exit "+strconv.Itoa(code))...)
		res := testRunner(t).Run(env)
		if res.ExitCode != code || res.Error != "" || res.Signal != "" {
			t.Fatalf("exit %d: result %+v", code, res)
		}
	}
}

func TestRunEnvAndWorkdir(t *testing.T) {
	bin := t.TempDir()
	writeScript(t, filepath.Join(bin, "greet"), "#!/bin/sh\necho \"greet $GREETING from $(pwd) base=$BASE\"\n")
	work := t.TempDir()
	env := envelope(t, "greet")
	env.Env = map[string]string{"GREETING": "hi there", "PATH": bin + ":/usr/bin:/bin"}
	env.Workdir = work
	res := testRunner(t).Run(env)
	if res.Error != "" || res.ExitCode != 0 {
		t.Fatalf("result %+v", res)
	}
	want := "greet hi there from " + work + " base=1\n"
	if got := string(stdoutOf(t, env)); got != want {
		t.Fatalf("stdout %q, want %q", got, want)
	}
}

func TestRunRelativePathEntry(t *testing.T) {
	work := t.TempDir()
	if err := os.Mkdir(filepath.Join(work, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeScript(t, filepath.Join(work, "bin", "local"), "#!/bin/sh\necho local\n")
	env := envelope(t, "local")
	env.Env = map[string]string{"PATH": "bin:/bin"}
	env.Workdir = work
	res := testRunner(t).Run(env)
	if res.Error != "" || string(stdoutOf(t, env)) != "local\n" {
		t.Fatalf("result %+v", res)
	}
}

func TestRunExecFailures(t *testing.T) {
	dir := t.TempDir()
	notExec := filepath.Join(dir, "notexec")
	if err := os.WriteFile(notExec, []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	noInterp := filepath.Join(dir, "nointerp")
	writeScript(t, noInterp, "#!/no/such/shell\n")
	garbage := filepath.Join(dir, "garbage")
	writeScript(t, garbage, "\x7fELF not really")
	for _, tc := range []struct {
		name string
		env  func(*Envelope)
		code int
	}{
		{"missing-in-path", func(e *Envelope) { e.Argv = []string{"no-such-command-hf"} }, ExitNotFound},
		{"missing-abs", func(e *Envelope) { e.Argv = []string{"/no/such/command"} }, ExitNotFound},
		{"no-interpreter", func(e *Envelope) { e.Argv = []string{noInterp} }, ExitNotFound},
		{"not-executable-in-path", func(e *Envelope) {
			e.Argv = []string{"notexec"}
			e.Env = map[string]string{"PATH": dir}
		}, ExitCannotExec},
		{"not-executable-abs", func(e *Envelope) { e.Argv = []string{notExec} }, ExitCannotExec},
		{"bad-format", func(e *Envelope) { e.Argv = []string{garbage} }, ExitCannotExec},
		{"bad-workdir", func(e *Envelope) { e.Argv = []string{"true"}; e.Workdir = "/no/such/dir" }, ExitShimError},
		{"bad-stdin-file", func(e *Envelope) { e.Argv = []string{"cat"}; e.StdinFile = "/no/such/file" }, ExitShimError},
		{"bad-result-dir", func(e *Envelope) { e.Argv = []string{"true"}; e.ResultDir = "/no/such/dir" }, ExitShimError},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := envelope(t)
			tc.env(env)
			res := testRunner(t).Run(env)
			if res.ExitCode != tc.code || res.Error == "" {
				t.Fatalf("result %+v, want exit %d with an error", res, tc.code)
			}
		})
	}
}

func TestRunSignalForwarding(t *testing.T) {
	// A test run under nohup (or any parent ignoring a signal) passes the
	// ignored disposition down to the commands, which then never die of
	// it. Catching the signals here makes them default again in children,
	// as they are in a container.
	sigs := []os.Signal{syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGQUIT}
	caught := make(chan os.Signal, 1)
	signal.Notify(caught, sigs...)
	defer signal.Stop(caught)
	for _, tc := range []struct {
		name   string
		script string
		sig    syscall.Signal
		code   int
		signal string
	}{
		{"trapped", `trap 'echo got TERM; exit 42' TERM; echo ready >&2; while :; do sleep 0.05; done`, syscall.SIGTERM, 42, ""},
		// sleep 3600: a lost signal shows as a hang, never as a command
		// that ended on its own within the deadline.
		{"default-term", `echo ready >&2; exec sleep 3600`, syscall.SIGTERM, 143, "SIGTERM"},
		{"int", `echo ready >&2; exec sleep 3600`, syscall.SIGINT, 130, "SIGINT"},
		{"hup", `echo ready >&2; exec sleep 3600`, syscall.SIGHUP, 129, "SIGHUP"},
		{"quit", `echo ready >&2; exec sleep 3600`, syscall.SIGQUIT, 131, "SIGQUIT"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stderr, err := os.Create(filepath.Join(t.TempDir(), "stderr"))
			if err != nil {
				t.Fatal(err)
			}
			defer stderr.Close()
			sigs := make(chan os.Signal, 1)
			r := testRunner(t)
			r.Stderr, r.Signals = stderr, sigs
			env := envelope(t, sh(killOnFailure(t)+tc.script)...)
			done := make(chan *Result, 1)
			go func() { done <- r.Run(env) }()
			// Deadlines that only catch hangs: a loaded machine may be slow.
			waitFor(t, 2*time.Minute, func() bool {
				b, _ := os.ReadFile(stderr.Name())
				return bytes.Contains(b, []byte("ready"))
			})
			sigs <- tc.sig
			var res *Result
			select {
			case res = <-done:
			case <-time.After(5 * time.Minute):
				t.Fatal("command did not end after the signal")
			}
			if res.ExitCode != tc.code || res.Signal != tc.signal || res.Error != "" || res.TimedOut {
				t.Fatalf("result %+v", res)
			}
			// Even a command that handles the signal and exits on its own
			// terms was stopped from outside: the result says so.
			if want := signalName(tc.sig); res.ExternalSignal != want {
				t.Fatalf("external signal %q, want %q", res.ExternalSignal, want)
			}
		})
	}
}

func TestRunTimeout(t *testing.T) {
	for _, tc := range []struct {
		name   string
		argv   []string
		signal string
	}{
		// Commands far longer than any deadline: a shim that waited for
		// them instead of killing them would show in the result (no
		// signal, exit 0) or hang, however slow the machine.
		{"term", nil, "SIGTERM"},
		{"ignores-term", []string{`trap '' TERM; `}, "SIGKILL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := envelope(t, sh(strings.Join(tc.argv, "")+killOnFailure(t)+"exec sleep 3600")...)
			env.TimeoutMs = 200
			res := testRunner(t).Run(env)
			if !res.TimedOut || res.Signal != tc.signal || res.Error != "" || res.ExternalSignal != "" {
				t.Fatalf("result %+v", res)
			}
		})
	}
}

// killOnFailure is a shell prefix that records the shell's PID; when the
// test fails, its cleanup kills that process if it still runs the test's
// sleep 3600. A command the shim failed to end must not outlive the test:
// it would hold what the test inherited (a run's docker lock, say).
func killOnFailure(t *testing.T) string {
	pidFile := filepath.Join(t.TempDir(), "pid")
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		b, err := os.ReadFile(pidFile)
		if err != nil {
			return
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || pid <= 0 {
			return
		}
		if cmd, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline"); strings.Contains(string(cmd), "3600") {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	return "echo $$ > " + pidFile + "; "
}

func TestRunNoTimeoutWhenFast(t *testing.T) {
	env := envelope(t, "true")
	env.TimeoutMs = 10_000
	if res := testRunner(t).Run(env); res.TimedOut || res.ExitCode != 0 {
		t.Fatalf("result %+v", res)
	}
}

func TestRunEscapedGrandchild(t *testing.T) {
	if _, err := exec.LookPath("setsid"); err != nil {
		t.Skip("no setsid")
	}
	// A grandchild in its own session escapes the group kill and holds
	// stdout open; the shim must still finish within the drain delay.
	pidFile := filepath.Join(t.TempDir(), "grandchild.pid")
	env := envelope(t, sh("setsid sh -c 'echo $$ > "+pidFile+"; exec sleep 3600' & sleep 0.3; echo main done")...)
	t.Cleanup(func() {
		// The grandchild outlives the shim by design; end it here.
		if b, err := os.ReadFile(pidFile); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	})
	stderr, err := os.Create(filepath.Join(t.TempDir(), "stderr"))
	if err != nil {
		t.Fatal(err)
	}
	defer stderr.Close()
	r := testRunner(t)
	r.Stderr = stderr // the grandchild outlives the test: keep it off go test's pipe
	start := time.Now()
	res := r.Run(env)
	if res.ExitCode != 0 || string(stdoutOf(t, env)) != "main done\n" {
		t.Fatalf("result %+v", res)
	}
	// Not a speed check: a shim waiting for the grandchild would take an
	// hour; the bound only tells that from a slow machine.
	if d := time.Since(start); d > 10*time.Minute {
		t.Fatalf("took %v: waited for the grandchild", d)
	}
	t.Logf("ended %v after the start (drain delay %v)", time.Since(start).Round(time.Millisecond), drainDelay)
}

func TestRunFile(t *testing.T) {
	dir := t.TempDir()
	write := func(body string) string {
		p := filepath.Join(t.TempDir(), "payload")
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	quiet, err := os.Create(filepath.Join(t.TempDir(), "stderr"))
	if err != nil {
		t.Fatal(err)
	}
	defer quiet.Close()
	r := testRunner(t)
	r.Stderr = quiet

	code := r.RunFile(write(`{"v":1,"call_id":"ok","argv":["sh","-c","echo hi; exit 7"],"stdout_limit":10,"result_dir":"` + dir + `"}`))
	res, err := ReadResult(dir)
	if err != nil || code != 7 || res.ExitCode != 7 || res.CallID != "ok" || res.StdoutBytes != 3 {
		t.Fatalf("code %d result %+v err %v", code, res, err)
	}

	code = r.RunFile(write(`{"v":2,"call_id":"future","argv":["true"],"stdout_limit":10,"result_dir":"` + dir + `"}`))
	res, err = ReadResult(dir)
	if err != nil || code != ExitShimError || res.ExitCode != ExitShimError || res.CallID != "future" || !strings.Contains(res.Error, "version") {
		t.Fatalf("code %d result %+v err %v", code, res, err)
	}

	if code := r.RunFile(write(`not json`)); code != ExitShimError {
		t.Fatalf("code %d", code)
	}
	if code := r.RunFile("/no/such/payload"); code != ExitShimError {
		t.Fatalf("code %d", code)
	}
	if leftovers, _ := filepath.Glob(filepath.Join(dir, ".result-*")); len(leftovers) > 0 {
		t.Fatalf("temp files left: %v", leftovers)
	}
}

// TestRunFileOnce: an envelope with once runs at most once per result dir;
// a second start leaves the first result alone.
func TestRunFileOnce(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(t.TempDir(), "payload")
	body := `{"v":1,"call_id":"once","argv":["sh","-c","echo ran >> ` + filepath.Join(dir, "runs") + `; echo out; exit 3"],"stdout_limit":100,"result_dir":"` + dir + `","once":true}`
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	quiet, err := os.Create(filepath.Join(t.TempDir(), "stderr"))
	if err != nil {
		t.Fatal(err)
	}
	defer quiet.Close()
	r := testRunner(t)
	r.Stderr = quiet
	if code := r.RunFile(p); code != 3 {
		t.Fatalf("first run: code %d", code)
	}
	if code := r.RunFile(p); code != ExitShimError {
		t.Fatalf("second run: code %d, want %d", code, ExitShimError)
	}
	runs, _ := os.ReadFile(filepath.Join(dir, "runs"))
	res, err := ReadResult(dir)
	if string(runs) != "ran\n" || err != nil || res.ExitCode != 3 || string(stdoutOf(t, &Envelope{ResultDir: dir})) != "out\n" {
		t.Fatalf("runs %q result %+v %v", runs, res, err)
	}
	msg, _ := os.ReadFile(quiet.Name())
	if !strings.Contains(string(msg), "started before") {
		t.Fatalf("stderr %q", msg)
	}
}

func TestMergeEnv(t *testing.T) {
	got := mergeEnv([]string{"A=1", "PATH=/bin", "B=2", "A=dup"}, map[string]string{"PATH": "/x", "Z": "z", "C": "c", "A": "new"})
	want := []string{"A=new", "PATH=/x", "B=2", "C=c", "Z=z"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("got %v, want %v", got, want)
	}
}

func writeScript(t *testing.T, path, body string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v", d)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestWaitForSeesALaterFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "envelope.json")
	done := make(chan error, 1)
	go func() { done <- WaitFor(path, time.Millisecond, nil, nil, nil) }()
	if err := os.WriteFile(path, []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	waitDone(t, done, "WaitFor did not see the file")
}

// waitDone waits for WaitFor's answer, which must be nil; a minute only
// catches a hang.
func waitDone(t *testing.T, done <-chan error, hang string) {
	t.Helper()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("WaitFor: %v", err)
		}
	case <-time.After(time.Minute):
		t.Fatal(hang)
	}
}

func TestWaitForStopsOnSignal(t *testing.T) {
	stop := make(chan os.Signal, 1)
	stop <- syscall.SIGTERM
	if err := WaitFor(filepath.Join(t.TempDir(), "never"), time.Millisecond, nil, nil, stop); !errors.Is(err, ErrWaitStopped) {
		t.Fatalf("WaitFor = %v, want ErrWaitStopped", err)
	}
}

// The doorbell wakes the wait at once, whatever the poll: with an hour's
// poll, only the bell can end it.
func TestWaitForDoorbell(t *testing.T) {
	path := filepath.Join(t.TempDir(), "envelope.json")
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pw.Close()
	done := make(chan error, 1)
	go func() { done <- WaitFor(path, time.Hour, pr, nil, nil) }()
	if err := os.WriteFile(path, []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := pw.Write([]byte{'\n'}); err != nil {
		t.Fatal(err)
	}
	waitDone(t, done, "the doorbell did not end the wait")
}

// SIGUSR1 (a Nomad template's change_signal) wakes the wait at once, and
// an empty file (the template rendered before its variable existed) is no
// envelope: with an hour's poll, only the signal after the content can end
// it.
func TestWaitForSignalAndEmptyFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "envelope.json")
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	wake := make(chan os.Signal, 1)
	done := make(chan error, 1)
	go func() { done <- WaitFor(path, time.Hour, nil, wake, nil) }()
	// The empty file and a first wake do not end it: a second wake after
	// the content does (the channel holds one signal, so the second send
	// waits for the first to be taken).
	wake <- syscall.SIGUSR1
	wake <- syscall.SIGUSR1
	select {
	case err := <-done:
		t.Fatalf("WaitFor returned %v on an empty file", err)
	default:
	}
	if err := os.WriteFile(path+".tmp", []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		t.Fatal(err)
	}
	wake <- syscall.SIGUSR1
	waitDone(t, done, "SIGUSR1 did not end the wait")
}
