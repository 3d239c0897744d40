package localexec

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"time"

	"github.com/hyperfunc/hyperfunc/executor"
	"github.com/hyperfunc/hyperfunc/shim"
)

// Where the call's pieces appear inside its container.
const (
	containerCallDir  = "/.hyperfunc/call"    // the call dir, read-write
	containerShim     = "/.hyperfunc/hf-shim" // the shim binary, read-only
	envelopeFile      = "envelope.json"
	stdinFile         = "stdin"
	containerEnvelope = containerCallDir + "/" + envelopeFile
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
	if err := os.Mkdir(dir, 0o777); err != nil && !errors.Is(err, fs.ErrExist) {
		return "", fmt.Errorf("call dir: %w", err)
	}
	// Whatever the umask: the image's USER, any uid, writes its result here.
	if err := os.Chmod(dir, 0o777); err != nil {
		return "", fmt.Errorf("call dir: %w", err)
	}
	if _, err := os.Stat(filepath.Join(dir, envelopeFile)); err == nil {
		return dir, nil
	}
	env := shim.Envelope{
		Version: shim.EnvelopeVersion, CallID: spec.CallID, Argv: argv, Env: spec.Env,
		StdoutLimit: limit, ResultDir: containerCallDir, Once: true,
	}
	if t := spec.Function.Timeout; t > 0 {
		env.TimeoutMs = max(t.Milliseconds(), 1)
	}
	if len(spec.Stdin) > inlineStdinMax {
		if err := writeAtomic(dir, stdinFile, spec.Stdin); err != nil {
			return "", err
		}
		env.StdinFile = containerCallDir + "/" + stdinFile
	} else {
		env.Stdin = spec.Stdin
	}
	if err := env.Validate(); err != nil {
		return "", err
	}
	data, err := json.Marshal(env)
	if err != nil {
		return "", fmt.Errorf("envelope: %w", err)
	}
	if err := writeAtomic(dir, envelopeFile, data); err != nil {
		return "", err
	}
	return dir, nil
}

// writeAtomic writes dir/name through a temp file and a rename, so a crash
// never leaves a partial file under the final name. No fsync: the file must
// survive this process, not the machine (the engine would not either).
func writeAtomic(dir, name string, data []byte) error {
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
	if err == nil {
		err = os.Rename(tmp, filepath.Join(dir, name))
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("writing %s: %w", name, err)
	}
	return nil
}

// dirResult is what the shim left in a call dir.
type dirResult struct {
	res    *shim.Result // nil: no result.json
	err    error        // reading result.json failed other than by absence
	stdout []byte
	trunc  bool // the stdout file holds more than the limit (a shim bug)
}

// readDir reads result.json and, when present, the stdout the shim kept.
// result.json is written last (after stdout is synced), so its presence
// means stdout is complete.
func readDir(dir string, limit int64) dirResult {
	res, err := shim.ReadResult(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return dirResult{}
	}
	if err != nil {
		return dirResult{err: err}
	}
	out := dirResult{res: res}
	f, err := os.Open(filepath.Join(dir, shim.StdoutFile))
	if err != nil {
		out.err = fmt.Errorf("stdout: %w", err)
		return out
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		out.err = fmt.Errorf("stdout: %w", err)
		return out
	}
	if int64(len(b)) > limit {
		b, out.trunc = b[:limit], true
	}
	out.stdout = b
	return out
}

func hasResult(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, shim.ResultFile))
	return err == nil
}

// claimed says whether the shim of this dir ever started (Envelope.Once).
func claimed(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, shim.StartedFile))
	return err == nil
}

// dirSpec reads the limits a collector needs from the envelope of a call
// dir whose container is gone.
func dirSpec(dir string) (limit int64, timeout time.Duration) {
	limit = DefaultStdoutLimit
	data, err := os.ReadFile(filepath.Join(dir, envelopeFile))
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
// canceled before its container started.
func claimDir(dir string) error {
	f, err := os.OpenFile(filepath.Join(dir, shim.StartedFile), os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	return f.Close()
}
