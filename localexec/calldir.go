package localexec

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"time"

	"github.com/hyperfunc/hyperfunc/executor"
	"github.com/hyperfunc/hyperfunc/shim"
)

// A call dir on the host, <StateDir>/<callid>/ (root, 0700: no other host
// user reaches into it), holds two parts with opposite trust:
//
//	in/   written by the agent before the container exists, mounted
//	      read-only: the envelope and a large stdin. The function cannot
//	      change its own input.
//	out/  written by the shim (as the function's user, so by the function
//	      too): stdout, result.json, .started. Mounted read-write, on a
//	      tmpfs of its own when the agent may mount one (size-bounded,
//	      nosuid, nodev, noexec: off Raft's data disk, and a setuid file
//	      or a device node made there means nothing on the host). The
//	      agent reads it as hostile input: see outdir.go.
const (
	containerInDir    = "/.hyperfunc/in"      // the call's input, read-only
	containerOutDir   = "/.hyperfunc/out"     // the shim's result, read-write
	containerShim     = "/.hyperfunc/hf-shim" // the shim binary, read-only
	inDir             = "in"
	outDir            = "out"
	envelopeFile      = "envelope.json"
	stdinFile         = "stdin"
	containerEnvelope = containerInDir + "/" + envelopeFile
	// inlineStdinMax: larger stdin goes to its own file, given to the
	// command as its fd 0 (no copy through the shim).
	inlineStdinMax = 64 << 10
)

// validCallID keeps call IDs usable as a directory and container name.
var validCallID = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$`)

// callDir is the host directory of a call started by this executor.
func (e *Executor) callDir(id string) string { return filepath.Join(e.stateDir, id) }

// isCallDir says whether dir may be removed as the dir of call id: a call
// dir is always named after its call.
func isCallDir(dir, id string) bool {
	return dir != "" && filepath.IsAbs(dir) && filepath.Base(dir) == id && validCallID.MatchString(id)
}

// prepare creates the call's dir and writes its envelope, once: a second
// Start of the same call (a retry, another leader) keeps the first one's.
// After it returns, the call can run from the dir alone, so any leader may
// start its container.
func (e *Executor) prepare(spec executor.Spec, argv []string, limit int64) (string, error) {
	dir := e.callDir(spec.CallID)
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return "", fmt.Errorf("call dir: %w", err)
	}
	in := filepath.Join(dir, inDir)
	if err := os.Mkdir(in, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return "", fmt.Errorf("call dir: %w", err)
	}
	if err := e.prepareOut(filepath.Join(dir, outDir), limit); err != nil {
		return "", err
	}
	if err := e.writeEnvelope(dir, spec, argv, limit); err != nil {
		return "", err
	}
	return dir, nil
}

// writeEnvelope writes the call's envelope (and a large stdin) into dir's
// in/, unless one is there already: the first writer's stays (a retried
// Start, another leader, a warm claim racing a cold start). The final name
// is made by link(2), which never replaces, so of two writers one wins.
func (e *Executor) writeEnvelope(dir string, spec executor.Spec, argv []string, limit int64) error {
	in := filepath.Join(dir, inDir)
	if _, err := os.Lstat(filepath.Join(in, envelopeFile)); err == nil {
		return nil
	}
	env := shim.Envelope{
		Version: shim.EnvelopeVersion, CallID: spec.CallID, Argv: argv, Env: spec.Env,
		StdoutLimit: limit, ResultDir: containerOutDir, Once: true,
		// The preview in out/ lets the watcher collect as soon as
		// result.json appears, without the container's logs.
		StderrPreview: executor.StderrPreviewBytes,
	}
	if t := spec.Function.Timeout; t > 0 {
		env.TimeoutMs = max(t.Milliseconds(), 1)
	}
	if len(spec.Stdin) > inlineStdinMax {
		if err := writeAtomic(in, stdinFile, spec.Stdin, false); err != nil {
			return err
		}
		env.StdinFile = containerInDir + "/" + stdinFile
	} else {
		env.Stdin = spec.Stdin
	}
	if err := env.Validate(); err != nil {
		return err
	}
	data, err := json.Marshal(env)
	if err != nil {
		return fmt.Errorf("envelope: %w", err)
	}
	return writeAtomic(in, envelopeFile, data, true)
}

// writeAtomic writes dir/name through a temp file and a rename, so a crash
// never leaves a partial file under the final name. No fsync: the file must
// survive this process, not the machine (the engine would not either).
// With exclusive, an existing file of that name is kept (link(2) instead of
// rename(2)), and that is not an error.
func writeAtomic(dir, name string, data []byte, exclusive bool) error {
	f, err := os.CreateTemp(dir, "."+name+"-*")
	if err != nil {
		return fmt.Errorf("writing %s: %w", name, err)
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp, 0o644)
	}
	switch {
	case err == nil && exclusive:
		err = os.Link(tmp, filepath.Join(dir, name))
		if errors.Is(err, fs.ErrExist) {
			err = nil
		}
		_ = os.Remove(tmp)
	case err == nil:
		err = os.Rename(tmp, filepath.Join(dir, name))
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("writing %s", name)
	}
	return nil
}

// hasResult says whether the shim wrote result.json (a link or anything
// else in its place counts too: the collector then reports it).
func hasResult(dir string) bool {
	_, err := os.Lstat(filepath.Join(dir, outDir, shim.ResultFile))
	return err == nil
}

// claimed says whether the shim of this dir ever started (Envelope.Once).
func claimed(dir string) bool {
	_, err := os.Lstat(filepath.Join(dir, outDir, shim.StartedFile))
	return err == nil
}

// dirSpec reads the limits a collector needs from the envelope of a call
// dir whose container is gone. The envelope is the agent's own (in/ is
// read-only to the function).
func dirSpec(dir string) (limit int64, timeout time.Duration) {
	limit = DefaultStdoutLimit
	data, err := os.ReadFile(filepath.Join(dir, inDir, envelopeFile))
	if err != nil {
		return limit, 0
	}
	var env struct {
		StdoutLimit int64 `json:"stdout_limit"`
		TimeoutMs   int64 `json:"timeout_ms"`
	}
	if json.Unmarshal(data, &env) != nil {
		return limit, 0
	}
	if env.StdoutLimit > 0 {
		limit = env.StdoutLimit
	}
	return limit, time.Duration(env.TimeoutMs) * time.Millisecond
}

// claimDir marks a call dir as started, as its shim does first thing
// (Envelope.Once): a shim that finds the mark runs nothing. Used for a call
// canceled before its container started. O_EXCL|O_NOFOLLOW: whatever sits
// at that name is left alone, a link is never followed.
func claimDir(dir string) error {
	f, err := os.OpenFile(filepath.Join(dir, outDir, shim.StartedFile), os.O_WRONLY|os.O_CREATE|os.O_EXCL|noFollow, 0o644)
	if errors.Is(err, fs.ErrExist) {
		return nil
	}
	if err != nil {
		return errors.New("claiming the call dir failed")
	}
	return f.Close()
}
