package server

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// checkDataDir refuses a data dir that exists but cannot be used, with a
// message that says which and why, before Raft sees it.
func checkDataDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("data dir %s: %w", dir, err)
	}
	// A probe of its own: two agents starting at once on one dir must
	// not remove each other's (the second is refused by the lock next).
	probe, err := os.CreateTemp(dir, ".probe-*")
	if err != nil {
		return fmt.Errorf("data dir %s is not writable: %w", dir, err)
	}
	probe.Close()
	return os.Remove(probe.Name())
}

// ErrDataDirInUse means another agent (or another server in this process)
// holds the data dir.
var ErrDataDirInUse = errors.New("data dir in use")

// lockDataDir takes an exclusive flock on <dir>/LOCK, without waiting,
// for as long as the returned file is open. A second agent on the same
// dir would delete the first one's state file at its start, could move
// the same raft.db into the WAL beside it (and lose entries), and then
// wait for ever on the log store's own lock; it is refused at once
// instead. flock locks belong to the open file, so a second server in the
// same process is refused too, and a killed agent's lock goes with it.
func lockDataDir(dir string) (*os.File, error) {
	p := filepath.Join(dir, "LOCK")
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("data dir lock %s: %w", p, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: %s is locked by another hyperfunc agent; stop it, or give this one its own -data-dir", ErrDataDirInUse, dir)
		}
		return nil, fmt.Errorf("data dir lock %s: %w", p, err)
	}
	return f, nil
}
