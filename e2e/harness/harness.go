// Package harness runs hyperfunc end to end: it builds the real binaries
// once per test binary, starts agents as processes on loopback ports,
// waits for them, runs the hyper CLI against them and watches the Docker
// engine for the containers they create.
//
// A test package wires it up with
//
//	func TestMain(m *testing.M) { os.Exit(harness.Main(m)) }
//
// Agents and the CLI are separate processes, so nothing here shares memory
// with the code under test; the race detector covers the test side only.
package harness

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Bins are the built binaries, side by side in one directory (the agent
// finds hf-shim next to itself).
type Bins struct {
	Dir       string
	Hyperfunc string
	Hyper     string
	Shim      string
}

var (
	buildOnce sync.Once
	bins      *Bins
	buildErr  error
	buildDir  string

	logDirOnce sync.Once
	logDir     string

	runID = newRunID()
	names atomic.Int64
)

func newRunID() string {
	b := make([]byte, 3)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

// RunID is a short random ID of this test binary's run. Function names
// carry it, so tests of parallel runs and packages can share one engine.
func RunID() string { return runID }

// Name returns a function name unique to this run: base-<run>-<n>.
func Name(base string) string {
	return fmt.Sprintf("%s-%s-%d", base, runID, names.Add(1))
}

// Main runs the tests, then removes the built binaries and every container
// this run's functions left behind, and keeps the agent logs only when a
// test failed.
func Main(m *testing.M) int {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	sweepContainers()
	if logDir != "" {
		if code == 0 {
			os.RemoveAll(logDir)
		} else {
			fmt.Fprintf(os.Stderr, "harness: agent logs kept in %s\n", logDir)
		}
	}
	return code
}

// Build builds hyperfunc, hyper and hf-shim (CGO_ENABLED=0) into a
// temporary directory, once per test binary.
func Build(t testing.TB) *Bins {
	t.Helper()
	buildOnce.Do(func() { bins, buildErr = build() })
	if buildErr != nil {
		t.Fatalf("building the binaries: %v", buildErr)
	}
	return bins
}

func build() (*Bins, error) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = "/usr/local/go/bin/go"
	}
	root, err := moduleRoot(goBin)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "hyperfunc-e2e-bin-")
	if err != nil {
		return nil, err
	}
	buildDir = dir
	b := &Bins{
		Dir:       dir,
		Hyperfunc: filepath.Join(dir, "hyperfunc"),
		Hyper:     filepath.Join(dir, "hyper"),
		Shim:      filepath.Join(dir, "hf-shim"),
	}
	cmd := exec.Command(goBin, "build", "-o", dir+string(filepath.Separator),
		"./cmd/hyperfunc", "./cmd/hyper", "./cmd/hf-shim")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go build: %w\n%s", err, out)
	}
	return b, nil
}

func moduleRoot(goBin string) (string, error) {
	out, err := exec.Command(goBin, "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", fmt.Errorf("not inside the hyperfunc module")
	}
	return filepath.Dir(mod), nil
}

// LogDir is where agent logs of this run go.
func LogDir(t testing.TB) string {
	t.Helper()
	logDirOnce.Do(func() {
		d, err := os.MkdirTemp("", "hyperfunc-e2e-logs-")
		if err != nil {
			panic(err)
		}
		logDir = d
	})
	return logDir
}

// Eventually polls cond every interval until it reports true or the
// deadline passes; then it fails the test with the last description.
func Eventually(t testing.TB, timeout time.Duration, cond func() (bool, string)) {
	t.Helper()
	if err := Poll(context.Background(), timeout, cond); err != nil {
		t.Fatal(err)
	}
}

// Poll is Eventually as an error.
func Poll(ctx context.Context, timeout time.Duration, cond func() (bool, string)) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		ok, desc := cond()
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("after %s: %s", timeout, desc)
		case <-tick.C:
		}
	}
}

// Result of a CLI run.
type Result struct {
	Stdout []byte
	Stderr []byte
	Code   int
}

func (r *Result) String() string {
	return fmt.Sprintf("exit %d, stdout %q, stderr %q", r.Code, trim(r.Stdout), trim(r.Stderr))
}

func trim(b []byte) string {
	if len(b) > 512 {
		return string(b[:512]) + "..."
	}
	return string(b)
}

// Hyper runs the hyper binary against agent a, with stdin (may be nil).
func Hyper(t testing.TB, a *Agent, stdin []byte, args ...string) *Result {
	t.Helper()
	b := Build(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, b.Hyper, args...)
	cmd.Env = a.cliEnv()
	return runCmd(t, cmd, stdin)
}

// Sh runs script with sh -c, with hyper on PATH and HYPER_ADDR set to a,
// in dir.
func Sh(t testing.TB, a *Agent, dir, script string) *Result {
	t.Helper()
	Build(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sh", "-c", script)
	cmd.Env = a.cliEnv()
	cmd.Dir = dir
	return runCmd(t, cmd, nil)
}

func runCmd(t testing.TB, cmd *exec.Cmd, stdin []byte) *Result {
	t.Helper()
	var stdout, stderr bytes.Buffer
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := &Result{Stdout: stdout.Bytes(), Stderr: stderr.Bytes()}
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("running %v: %v", cmd.Args, err)
		}
		r.Code = ee.ExitCode()
	}
	return r
}

// Must fails the test unless the run exited 0.
func (r *Result) Must(t testing.TB, what string) *Result {
	t.Helper()
	if r.Code != 0 {
		t.Fatalf("%s: %s", what, r)
	}
	return r
}
