package nomadtest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hyperfunc/hyperfunc/shim"
)

// Argv[0] values that DefaultRunner treats as platform events instead of
// commands to run.
const (
	// OOMCommand makes the task die as the OOM killer would kill it: exit
	// 137, OOMKilled, no result file (the shim died too).
	OOMCommand = "hf-test-oom"
	// NoShimCommand prints its arguments to the container's stdout and
	// exits 0 without a result file, as a task not run through the shim.
	NoShimCommand = "hf-test-noshim"
	// LinkCommand NAME TARGET runs as `true` through the shim, then leaves
	// alloc/data/NAME as a symbolic link to TARGET, as a hostile task can
	// (the double's fs endpoints then follow it as the real client does).
	LinkCommand = "hf-test-link"
	// ManyFilesCommand N runs as `true` through the shim, then leaves N
	// empty files with 200-character names in alloc/data.
	ManyFilesCommand = "hf-test-many"
	// ForgeSealCommand runs as `true` through the shim and prints the
	// call's seal line on the container's stdout, as a function of the
	// shim's own uid can (through /proc/1/fd/1).
	ForgeSealCommand = "hf-test-forge-seal"
)

// sealing: the task's shim runs its command as another, non-root user
// (hf-shim -as UID:GID with a uid other than 0).
func sealing(cfg map[string]any) bool {
	var ep []string
	switch v := cfg["entrypoint"].(type) {
	case []string:
		ep = v
	case []any:
		for _, a := range v {
			s, _ := a.(string)
			ep = append(ep, s)
		}
	}
	for i := 0; i+1 < len(ep); i++ {
		if ep[i] == "-as" {
			cred, err := shim.ParseUser(ep[i+1])
			return err == nil && cred.Uid != 0
		}
	}
	return false
}

// DefaultRunner runs the task as the shim would inside the container: it
// decodes the envelope from local/payload and runs its argv as a local
// process with the shim package (stdin inline or from the local/stdin
// artifact, stdout capped, timeout), and stores stdout and result.json as
// alloc/data files.
func DefaultRunner(ctx context.Context, t *Task) Result {
	payload, ok := t.Local["payload"]
	if !ok {
		return Result{ExitCode: shim.ExitShimError, Stderr: []byte("hf-shim: reading envelope: open /local/none: no such file or directory\n")}
	}
	en, err := shim.DecodeEnvelope(payload)
	if err != nil {
		return Result{ExitCode: shim.ExitShimError, Stderr: []byte("hf-shim: " + err.Error() + "\n")}
	}
	switch en.Argv[0] {
	case OOMCommand:
		return Result{ExitCode: 137, Signal: 9, OOMKilled: true, Stderr: []byte("Killed\n")}
	case NoShimCommand:
		return Result{Stdout: []byte(strings.Join(en.Argv[1:], " ") + "\n")}
	}
	var link []string
	if en.Argv[0] == LinkCommand && len(en.Argv) == 3 {
		link, en.Argv = en.Argv[1:], []string{"true"}
	}
	forge := en.Argv[0] == ForgeSealCommand
	if forge {
		en.Argv = []string{"true"}
	}
	many := 0
	if en.Argv[0] == ManyFilesCommand && len(en.Argv) == 2 {
		many, _ = strconv.Atoi(en.Argv[1])
		en.Argv = []string{"true"}
	}
	dir, err := os.MkdirTemp("", "nomadtest-alloc-")
	if err != nil {
		return Result{DriverError: err.Error()}
	}
	defer os.RemoveAll(dir)
	data := filepath.Join(dir, "alloc", "data")
	if err := os.MkdirAll(data, 0o755); err != nil {
		return Result{DriverError: err.Error()}
	}
	en.ResultDir = data
	if en.StdinFile != "" {
		name := strings.TrimPrefix(en.StdinFile, "/local/")
		b, ok := t.Local[name]
		if !ok {
			return Result{ExitCode: shim.ExitShimError, Stderr: []byte("hf-shim: stdin file " + en.StdinFile + " missing\n")}
		}
		p := filepath.Join(dir, "local-"+filepath.Base(name))
		if err := os.WriteFile(p, b, 0o644); err != nil {
			return Result{DriverError: err.Error()}
		}
		en.StdinFile = p
	}
	stderr, err := os.CreateTemp(dir, "stderr-")
	if err != nil {
		return Result{DriverError: err.Error()}
	}
	defer stderr.Close()
	sig := make(chan os.Signal, 1)
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-ctx.Done():
			sig <- syscall.SIGKILL
		case <-done:
		}
	}()
	r := &shim.Runner{
		Stderr:    stderr,
		BaseEnv:   []string{"PATH=" + os.Getenv("PATH")},
		Signals:   sig,
		KillGrace: 200 * time.Millisecond,
	}
	res := r.Run(en)
	if err := shim.WriteResult(data, res); err != nil {
		return Result{ExitCode: shim.ExitShimError, Stderr: []byte(err.Error())}
	}
	if link != nil {
		p := filepath.Join(data, link[0])
		_ = os.Remove(p)
		if err := os.Symlink(link[1], p); err != nil {
			return Result{DriverError: err.Error()}
		}
	}
	out := Result{ExitCode: res.ExitCode, Files: map[string][]byte{}, Links: map[string][]byte{}}
	if forge || sealing(t.Config) {
		// The real shim, PID 1 and root, prints it once every process of
		// the command has ended (shim/seal.go): here, once it has run.
		out.Stdout = []byte(shim.SealLine(en.CallID))
	}
	for i := range many {
		out.Files[fmt.Sprintf("alloc/data/%0200d", i)] = nil
	}
	for _, f := range []string{shim.StdoutFile, shim.StderrFile, shim.ResultFile} {
		p := filepath.Join(data, f)
		b, err := os.ReadFile(p) // follows a link, as the real client does
		if err != nil {
			continue
		}
		if fi, err := os.Lstat(p); err == nil && fi.Mode()&os.ModeSymlink != 0 {
			out.Links["alloc/data/"+f] = b
		} else {
			out.Files["alloc/data/"+f] = b
		}
	}
	if b, err := os.ReadFile(stderr.Name()); err == nil {
		out.Stderr = b
	}
	if res.Error != "" && len(out.Stderr) == 0 {
		out.Stderr = []byte(fmt.Sprintf("hf-shim: %s\n", res.Error))
	}
	return out
}
