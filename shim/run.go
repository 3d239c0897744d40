package shim

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"syscall"
	"time"
)

// DefaultKillGrace is how long a timed-out command has between SIGTERM and
// SIGKILL.
const DefaultKillGrace = 5 * time.Second

// drainDelay bounds the wait for the stdout pipe to close once the command
// has exited and its process group has been killed (a daemonized grandchild
// may keep the pipe open).
const drainDelay = 2 * time.Second

// Runner runs one envelope. The zero value is usable; main wires Signals.
type Runner struct {
	// Stderr receives the command's stderr (passed as the fd itself) and the
	// shim's own messages. Nil means os.Stderr.
	Stderr *os.File
	// BaseEnv is the environment the command inherits before Envelope.Env is
	// applied. Nil means os.Environ().
	BaseEnv []string
	// Signals delivers signals to forward to the command's process group.
	Signals <-chan os.Signal
	// KillGrace is the time between SIGTERM and SIGKILL on timeout.
	// Zero means DefaultKillGrace.
	KillGrace time.Duration
	// Reap makes the shim reap every child, as PID 1 must: orphans
	// re-parented to the shim would otherwise stay zombies. Only set it when
	// the process has no other children (never inside a test binary).
	Reap bool
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Credential, when set, is the user the command runs as (the shim
	// itself then runs as root: seal.go says why).
	Credential *syscall.Credential
	// EndOthers, when set, is called once the command has exited, before
	// anything is written: EndAll in a sandbox the shim is PID 1 of. Its
	// true makes RunFile print the seal on Seal after result.json.
	EndOthers func() bool
	// Seal receives the seal line (seal.go); nil: none is printed.
	Seal io.Writer

	alone bool // EndOthers answered true
}

// RunFile reads the envelope at path, runs it, writes the result and returns
// the exit code for the shim process.
func (r *Runner) RunFile(path string) int {
	data, err := readLimited(path, MaxEnvelopeSize)
	if err != nil {
		r.logf("reading envelope: %v", err)
		return ExitShimError
	}
	env, err := DecodeEnvelope(data)
	if err != nil {
		callID, dir := salvage(data)
		res := r.failure(callID, ExitShimError, err)
		if dir != "" {
			if werr := WriteResult(dir, res); werr != nil {
				r.logf("%v", werr)
			}
		}
		r.logf("%v", err)
		return ExitShimError
	}
	if env.Once {
		if err := claim(env.ResultDir); err != nil {
			// Not an error of this run: a run happened already, and its
			// result (or its absence) is the call's. Write nothing.
			r.logf("%v", err)
			return ExitShimError
		}
	}
	res := r.Run(env)
	if res.Error != "" {
		r.logf("%s", res.Error)
	}
	if err := WriteResult(env.ResultDir, res); err != nil {
		r.logf("%v", err)
		return ExitShimError
	}
	if r.alone && r.Seal != nil {
		if _, err := io.WriteString(r.Seal, SealLine(env.CallID)); err != nil {
			r.logf("printing the seal: %v", err)
		}
	}
	return res.ExitCode
}

// ErrAlreadyStarted: an envelope with Once found its result dir claimed.
var ErrAlreadyStarted = errors.New("this call was started before; not running it again")

// claim creates dir/StartedFile exclusively.
func claim(dir string) error {
	f, err := os.OpenFile(joinPath(dir, StartedFile), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if errors.Is(err, os.ErrExist) {
		return ErrAlreadyStarted
	}
	if err != nil {
		return fmt.Errorf("claiming the result dir: %w", err)
	}
	return f.Close()
}

// Run runs the envelope's command and returns its result; it writes
// ResultDir/stdout but not result.json. Result.ExitCode is the code the shim
// should exit with.
func (r *Runner) Run(env *Envelope) *Result {
	res, err := r.run(env)
	if err != nil {
		code := ExitShimError
		var ce *codeError
		if errors.As(err, &ce) {
			code = ce.code
		}
		f := r.failure(env.CallID, code, err)
		if res != nil {
			f.StartedAt = res.StartedAt
		}
		return f
	}
	return res
}

func (r *Runner) run(env *Envelope) (*Result, error) {
	res := &Result{Version: EnvelopeVersion, CallID: env.CallID, StartedAt: r.stamp()}
	if env.Workdir != "" {
		if fi, err := os.Stat(env.Workdir); err != nil || !fi.IsDir() {
			return res, fmt.Errorf("workdir %q is not a directory", env.Workdir)
		}
	}
	environ := mergeEnv(r.baseEnv(), env.Env)
	pathList, ok := envValue(environ, "PATH")
	if !ok {
		pathList = DefaultPath
	}
	path, err := lookPath(env.Argv[0], pathList, env.Workdir)
	if err != nil {
		return res, err
	}

	stdin, feed, err := openStdin(env)
	if err != nil {
		return res, err
	}
	defer stdin.Close()

	out, err := os.OpenFile(joinPath(env.ResultDir, StdoutFile), os.O_WRONLY|os.O_CREATE|os.O_TRUNC|syscall.O_NOFOLLOW, 0o644)
	if err != nil {
		return res, fmt.Errorf("creating stdout file: %w", err)
	}
	defer out.Close()
	pr, pw, err := os.Pipe()
	if err != nil {
		return res, fmt.Errorf("stdout pipe: %w", err)
	}
	defer pr.Close()

	errOut, tee, err := r.stderrTee(env.StderrPreview)
	if err != nil {
		_ = pw.Close()
		return res, err
	}
	proc, err := os.StartProcess(path, env.Argv, &os.ProcAttr{
		Dir:   env.Workdir,
		Env:   environ,
		Files: []*os.File{stdin, pw, errOut},
		Sys:   &syscall.SysProcAttr{Setpgid: true, Credential: r.Credential},
	})
	_ = pw.Close() // the child holds its own copy
	if tee != nil {
		_ = errOut.Close()
		defer tee.close()
	}
	if err != nil {
		if feed != nil {
			_ = feed.Close()
		}
		return res, execError(env.Argv[0], err)
	}
	pgid := proc.Pid
	kill := func(sig syscall.Signal) { _ = syscall.Kill(-pgid, sig) }

	if feed != nil {
		go func() {
			// EPIPE when the command exits without reading all of it is fine.
			_, _ = feed.Write(env.Stdin)
			_ = feed.Close()
		}()
	}

	cw := &capWriter{w: out, limit: env.StdoutLimit, onOverflow: func() { kill(syscall.SIGKILL) }}
	copied := make(chan error, 1)
	go func() {
		_, err := io.Copy(cw, pr)
		copied <- err
	}()

	var timedOut bool
	var timeout <-chan time.Time
	if env.TimeoutMs > 0 {
		t := time.NewTimer(time.Duration(env.TimeoutMs) * time.Millisecond)
		defer t.Stop()
		timeout = t.C
	}
	var grace <-chan time.Time
	waited := make(chan waitResult, 1)
	go func() { waited <- r.wait(proc.Pid) }()

	var wr waitResult
	defer proc.Release()
loop:
	for {
		select {
		case wr = <-waited:
			break loop
		case sig := <-r.Signals:
			if s, ok := sig.(syscall.Signal); ok {
				if res.ExternalSignal == "" {
					res.ExternalSignal = signalName(s)
				}
				kill(s)
			}
		case <-timeout:
			timedOut = true
			kill(syscall.SIGTERM)
			g := time.NewTimer(r.killGrace())
			defer g.Stop()
			grace = g.C
		case <-grace:
			kill(syscall.SIGKILL)
		}
	}
	// The call ends with its main process: stop whatever it left behind in
	// its process group, then collect the rest of the pipe.
	kill(syscall.SIGKILL)
	if r.EndOthers != nil {
		// And whatever left the group (setsid, a double fork), before the
		// shim writes anything: nothing of the function outlives its call.
		r.alone = r.EndOthers()
	}
	// One drain deadline for both pipes.
	drained := time.Now().Add(drainDelay)
	var copyErr error
	select {
	case copyErr = <-copied:
	case <-time.After(time.Until(drained)):
		_ = pr.Close() // unblocks the copy
		copyErr = <-copied
	}
	if tee != nil {
		tee.wait(time.After(time.Until(drained)))
	}
	res.EndedAt = r.stamp()
	if wr.err != nil {
		return res, fmt.Errorf("waiting for the command: %w", wr.err)
	}
	if copyErr != nil && !errors.Is(copyErr, os.ErrClosed) {
		return res, fmt.Errorf("copying stdout: %w", copyErr)
	}
	if cw.err != nil {
		return res, fmt.Errorf("writing stdout file: %w", cw.err)
	}
	if err := out.Sync(); err != nil {
		return res, fmt.Errorf("syncing stdout file: %w", err)
	}
	if tee != nil {
		if err := tee.write(env.ResultDir); err != nil {
			// Only the preview is missing: the reader falls back to the
			// container's logs.
			r.logf("%v", err)
		}
	}

	res.StdoutBytes = cw.n
	res.Truncated = cw.truncated
	res.TimedOut = timedOut
	ws := wr.status
	switch {
	case ws.Signaled():
		res.ExitCode = 128 + int(ws.Signal())
		res.Signal = signalName(ws.Signal())
	default:
		res.ExitCode = ws.ExitStatus()
	}
	return res, nil
}

type waitResult struct {
	status syscall.WaitStatus
	err    error
}

// wait waits for pid; with Reap it reaps any other child on the way.
func (r *Runner) wait(pid int) waitResult {
	target := pid
	if r.Reap {
		target = -1
	}
	for {
		var ws syscall.WaitStatus
		got, err := syscall.Wait4(target, &ws, 0, nil)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil {
			return waitResult{err: err}
		}
		if got == pid {
			return waitResult{status: ws}
		}
	}
}

// openStdin returns the file to give the command as fd 0 and, for inline
// stdin, the pipe end to feed it through.
func openStdin(env *Envelope) (stdin, feed *os.File, err error) {
	if env.StdinFile != "" {
		f, err := os.Open(env.StdinFile)
		if err != nil {
			return nil, nil, fmt.Errorf("opening stdin file: %w", err)
		}
		return f, nil, nil
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, nil, fmt.Errorf("stdin pipe: %w", err)
	}
	if len(env.Stdin) == 0 {
		_ = pw.Close()
		return pr, nil, nil
	}
	return pr, pw, nil
}

// capWriter keeps the first limit bytes and calls onOverflow once when more
// arrive; it never fails the copy, so the pipe keeps draining.
type capWriter struct {
	w          io.Writer
	limit, n   int64
	truncated  bool
	err        error
	onOverflow func()
}

func (c *capWriter) Write(p []byte) (int, error) {
	keep := p
	if room := c.limit - c.n; int64(len(p)) > room {
		keep = p[:max(room, 0)]
		if !c.truncated {
			c.truncated = true
			c.onOverflow()
		}
	}
	if len(keep) > 0 && c.err == nil {
		var m int
		m, c.err = c.w.Write(keep)
		c.n += int64(m)
	}
	return len(p), nil
}

type codeError struct {
	code int
	err  error
}

func (e *codeError) Error() string { return e.err.Error() }
func (e *codeError) Unwrap() error { return e.err }

func execError(name string, err error) error {
	code := ExitCannotExec
	if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ENOTDIR) {
		code = ExitNotFound
	}
	return &codeError{code: code, err: fmt.Errorf("exec %s: %w", name, err)}
}

func (r *Runner) failure(callID string, code int, err error) *Result {
	now := r.stamp()
	return &Result{Version: EnvelopeVersion, CallID: callID, ExitCode: code,
		StartedAt: now, EndedAt: now, Error: err.Error()}
}

func (r *Runner) stamp() string {
	now := time.Now
	if r.Now != nil {
		now = r.Now
	}
	return now().UTC().Format(time.RFC3339Nano)
}

func (r *Runner) stderr() *os.File {
	if r.Stderr != nil {
		return r.Stderr
	}
	return os.Stderr
}

func (r *Runner) logf(format string, a ...any) {
	fmt.Fprintf(r.stderr(), "hf-shim: "+format+"\n", a...)
}

func (r *Runner) baseEnv() []string {
	if r.BaseEnv != nil {
		return r.BaseEnv
	}
	return os.Environ()
}

func (r *Runner) killGrace() time.Duration {
	if r.KillGrace > 0 {
		return r.KillGrace
	}
	return DefaultKillGrace
}

// mergeEnv returns base with over applied: overridden variables keep their
// place, new ones follow in sorted order.
func mergeEnv(base []string, over map[string]string) []string {
	out := make([]string, 0, len(base)+len(over))
	seen := make(map[string]bool, len(over))
	for _, kv := range base {
		k, _, _ := strings.Cut(kv, "=")
		if v, ok := over[k]; ok {
			if !seen[k] {
				out = append(out, k+"="+v)
				seen[k] = true
			}
			continue
		}
		out = append(out, kv)
	}
	keys := make([]string, 0, len(over))
	for k := range over {
		if !seen[k] {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		out = append(out, k+"="+over[k])
	}
	return out
}

// envValue is the last value of key in environ, as getenv sees it.
func envValue(environ []string, key string) (string, bool) {
	val, found := "", false
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok && k == key {
			val, found = v, true
		}
	}
	return val, found
}

func readLimited(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, limit)
	}
	return data, nil
}

var signalNames = map[syscall.Signal]string{
	syscall.SIGHUP: "SIGHUP", syscall.SIGINT: "SIGINT", syscall.SIGQUIT: "SIGQUIT",
	syscall.SIGILL: "SIGILL", syscall.SIGTRAP: "SIGTRAP", syscall.SIGABRT: "SIGABRT",
	syscall.SIGBUS: "SIGBUS", syscall.SIGFPE: "SIGFPE", syscall.SIGKILL: "SIGKILL",
	syscall.SIGUSR1: "SIGUSR1", syscall.SIGSEGV: "SIGSEGV", syscall.SIGUSR2: "SIGUSR2",
	syscall.SIGPIPE: "SIGPIPE", syscall.SIGALRM: "SIGALRM", syscall.SIGTERM: "SIGTERM",
	syscall.SIGXCPU: "SIGXCPU", syscall.SIGXFSZ: "SIGXFSZ", syscall.SIGSYS: "SIGSYS",
}

func signalName(s syscall.Signal) string {
	if n, ok := signalNames[s]; ok {
		return n
	}
	return fmt.Sprintf("signal %d", int(s))
}
