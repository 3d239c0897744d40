package localexec

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/hyperfunc/hyperfunc/executor"
	"github.com/hyperfunc/hyperfunc/shim"
)

// noFollow: never open through a link the function planted.
const noFollow = unix.O_NOFOLLOW

// outSlack is the room of a call's out/ tmpfs beyond its stdout limit:
// result.json, .started and the shim's temp file.
const outSlack = 1 << 20

// outInodes bounds the files of a call's out/ tmpfs: the shim makes three.
const outInodes = 64

// maxResultBytes bounds result.json: the shim writes a few hundred bytes.
const maxResultBytes = 64 << 10

// prepareOut creates the call's out/ dir and, when the agent may mount,
// a tmpfs on it of limit+outSlack bytes, nosuid, nodev, noexec, so that what
// the function writes there is bounded, off the data disk, and inert on
// the host. A mount already there (a retried Start) is kept.
func (e *Executor) prepareOut(out string, limit int64) error {
	if err := os.Mkdir(out, 0o777); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("call dir: %w", err)
	}
	if e.mountOut && !isMountPoint(out) {
		// nr_inodes: size bounds bytes, not empty files, each of which costs
		// the host kernel memory.
		opts := "size=" + strconv.FormatInt(limit+outSlack, 10) + ",nr_inodes=" + strconv.Itoa(outInodes) + ",mode=0777"
		if err := unix.Mount("tmpfs", out, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, opts); err != nil {
			return fmt.Errorf("mounting the call's out dir: %w", err)
		}
	}
	// Whatever the umask: the function's user, any uid, writes here.
	if err := os.Chmod(out, 0o777); err != nil {
		return fmt.Errorf("call dir: %w", err)
	}
	return nil
}

// canMount says whether this process may mount a tmpfs under dir (root on
// the host, not in a restricted user namespace).
func canMount(dir string) bool {
	p, err := os.MkdirTemp(dir, ".mount-probe-")
	if err != nil {
		return false
	}
	defer os.Remove(p)
	if err := unix.Mount("tmpfs", p, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "size=4096"); err != nil {
		return false
	}
	return unix.Unmount(p, unix.MNT_DETACH) == nil
}

// isMountPoint: dir is on another device than its parent.
func isMountPoint(dir string) bool {
	var a, b unix.Stat_t
	if unix.Lstat(dir, &a) != nil || unix.Lstat(filepath.Dir(dir), &b) != nil {
		return false
	}
	return a.Dev != b.Dev
}

// removeCallDir unmounts the call's out/ tmpfs, if any, and removes the
// dir. os.RemoveAll never follows links.
func removeCallDir(dir string) error {
	out := filepath.Join(dir, outDir)
	if isMountPoint(out) {
		if err := unix.Unmount(out, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
			return fmt.Errorf("unmounting a call's out dir: %w", err)
		}
	}
	return os.RemoveAll(dir)
}

// hidePaths takes the agent's host paths out of a message a user will
// read (the engine's errors name bind mounts): they would tell a function
// where to point. The state dir becomes "<calls>", the shim "<hf-shim>".
func (e *Executor) hidePaths(msg string) string {
	return strings.NewReplacer(e.stateDir, "<calls>", e.shimPath, "<hf-shim>").Replace(msg)
}

// dirResult is what the shim left in a call dir.
type dirResult struct {
	res    *shim.Result // nil: no result.json
	err    error        // reading result.json failed other than by absence
	stdout []byte
	trunc  bool // the stdout file holds more than the limit
	// stderr is the shim's preview (Envelope.StderrPreview), when it
	// wrote one and it reads as a plain file; else the container's logs
	// give it.
	stderr    []byte
	hasStderr bool
}

// readDir reads result.json and, when present, the stdout the shim kept,
// from the call's out/ dir, which the function could write too: nothing
// there is followed (links), opened if not a regular file with one link
// (FIFOs, devices, hard links), or read past its bound. Errors name files
// of the call, never a host path. result.json is written last (after
// stdout is synced), so its presence means stdout is complete.
func readDir(dir string, limit int64) dirResult {
	d, err := unix.Open(filepath.Join(dir, outDir), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENOENT) {
		return dirResult{}
	}
	if err != nil {
		return dirResult{err: errors.New("the call's result dir is not a directory")}
	}
	defer unix.Close(d)
	data, err := readFileAt(d, shim.ResultFile, maxResultBytes+1)
	if errors.Is(err, fs.ErrNotExist) {
		return dirResult{}
	}
	if err != nil {
		return dirResult{err: err}
	}
	if len(data) > maxResultBytes {
		return dirResult{err: fmt.Errorf("%s is larger than %d bytes", shim.ResultFile, maxResultBytes)}
	}
	var res shim.Result
	if err := json.Unmarshal(data, &res); err != nil {
		return dirResult{err: fmt.Errorf("%s is not a result record", shim.ResultFile)}
	}
	out := dirResult{res: &res}
	b, err := readFileAt(d, shim.StdoutFile, limit+1)
	if errors.Is(err, fs.ErrNotExist) {
		err = fmt.Errorf("%s is missing", shim.StdoutFile) // the shim always makes one
	}
	if err != nil {
		out.err = err
		return out
	}
	if int64(len(b)) > limit {
		b, out.trunc = b[:limit], true
	}
	out.stdout = b
	if e, err := readFileAt(d, shim.StderrFile, executor.StderrPreviewBytes); err == nil {
		out.stderr, out.hasStderr = e, true
	}
	return out
}

// resultReady says whether the shim's result.json is in dir and the call
// can be collected before its container has exited: anything but an exit
// by SIGKILL (137), which may be the OOM killer's, told only by the
// container's state once it exited.
func resultReady(dir string) bool {
	d, err := unix.Open(filepath.Join(dir, outDir), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return false
	}
	defer unix.Close(d)
	data, err := readFileAt(d, shim.ResultFile, maxResultBytes)
	if err != nil {
		return false
	}
	var res shim.Result
	return json.Unmarshal(data, &res) == nil && res.ExitCode != 137
}

// readFileAt reads at most max bytes of name in dir d, a regular file with
// one link, never through a link. Absence is fs.ErrNotExist.
func readFileAt(d int, name string, max int64) ([]byte, error) {
	fd, err := unix.Openat(d, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	switch {
	case errors.Is(err, unix.ENOENT):
		return nil, fs.ErrNotExist
	case errors.Is(err, unix.ELOOP):
		return nil, fmt.Errorf("%s is a symbolic link", name)
	case err != nil:
		return nil, fmt.Errorf("%s cannot be opened: %v", name, err)
	}
	f := os.NewFile(uintptr(fd), name)
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, fmt.Errorf("%s cannot be read", name)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil, fmt.Errorf("%s is not a regular file", name)
	}
	if st.Nlink != 1 {
		return nil, fmt.Errorf("%s has %d hard links", name, st.Nlink)
	}
	b, err := io.ReadAll(io.LimitReader(f, max))
	if err != nil {
		return nil, fmt.Errorf("%s cannot be read", name)
	}
	return b, nil
}
