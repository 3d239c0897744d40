package shim

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// A seal tells the reader of a sandbox's files, before the sandbox has
// ended, that no process of the function is left in it, so nothing can
// change alloc/data any more: what a check of it finds is what a read then
// returns. Nomad's client reads alloc files as root following links, so a
// reader that checked while the function lived could be handed a link it
// swapped in after the check; it has to wait for the allocation's end
// (gVisor's teardown and the client's batched update: ~0.4-0.6 s), or for
// a seal it can trust.
//
// The seal is a line on the shim's own stdout, which is neither the
// command's stdout (a pipe into ResultDir/stdout) nor its stderr (the
// container's stderr stream). It can be trusted only when the function
// cannot write to the shim's descriptors: when the shim runs as root (with
// CAP_SETUID, CAP_SETGID and CAP_KILL only) and the command as another,
// non-root user without capabilities. Under gVisor a process of the same
// uid opens /proc/1/fd/1 and writes into it whatever PR_SET_DUMPABLE says;
// a process of another uid gets EACCES there and EPERM from kill(1)
// (checked on runsc, docker_test.go). The reader decides whether a
// sandbox's seal counts from how it built the sandbox, never from the
// sandbox.

// SealPrefix starts the seal line: SealPrefix + call ID + "\n".
const SealPrefix = "hf-shim: sealed "

// SealLine is the line the shim prints for callID.
func SealLine(callID string) string { return SealPrefix + callID + "\n" }

// endAllWithin bounds EndAll: a sandbox whose processes do not all die in
// that time is not sealed (its reader waits for the sandbox's end).
const endAllWithin = 10 * time.Second

// EndAll kills every other process of the sandbox and reaps its children
// until /proc lists none alive (zombies count as dead); false when some
// are still alive after 10 s, or /proc cannot be read. It must run as the
// PID 1 of the sandbox's PID namespace with CAP_KILL: kill(-1) there
// reaches every process but the caller. Never call it anywhere else (in a
// test binary it would kill the host's processes).
func EndAll() bool {
	deadline := time.Now().Add(endAllWithin)
	for {
		// A process forked while this kill walks the tasks is found by
		// the scan and killed next round.
		if err := syscall.Kill(-1, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
			return false
		}
		reapAll()
		alive, err := othersAlive("/proc", os.Getpid())
		if err != nil {
			return false
		}
		// The scan is not atomic: under gVisor a killed process still
		// inside fork(2) completes it (gVisor's clone, unlike Linux's,
		// does not check for the parent's pending SIGKILL), so its child
		// can appear after the listing while the parent is dead by the
		// time its stat is read, and the scan counts none alive. Only
		// kill(-1) finding no process at all (ESRCH: its list of thread
		// groups is taken at once, and with none left none can fork) says
		// the shim is alone; zombies count until reaped.
		if alive == 0 {
			reapAll()
			if err := syscall.Kill(-1, syscall.SIGKILL); errors.Is(err, syscall.ESRCH) {
				return true
			} else if err != nil {
				return false
			}
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// reapAll collects every child that has exited, without blocking.
func reapAll() {
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil || pid <= 0 {
			return
		}
	}
}

// othersAlive counts the processes under procDir other than self that are
// not zombies (state Z or X in /proc/PID/stat). A process that vanished
// between the listing and its stat is dead.
func othersAlive(procDir string, self int) (int, error) {
	entries, err := os.ReadDir(procDir)
	if err != nil {
		return 0, fmt.Errorf("listing %s: %w", procDir, err)
	}
	n := 0
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		stat, err := os.ReadFile(procDir + "/" + e.Name() + "/stat")
		if err != nil {
			continue // exited meanwhile
		}
		if state := procState(string(stat)); state != 'Z' && state != 'X' {
			n++
		}
	}
	return n, nil
}

// procState is the state field of a /proc/PID/stat line: the first
// character after the last ")" (the command name may itself hold one).
func procState(stat string) byte {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 || i+2 >= len(stat) {
		return '?'
	}
	return stat[i+2]
}

// ParseUser parses the numeric "UID:GID" of hf-shim -as into the
// credential the command runs with (no supplementary groups). Both must
// be given.
func ParseUser(s string) (*syscall.Credential, error) {
	u, g, ok := strings.Cut(s, ":")
	if !ok {
		return nil, fmt.Errorf("-as %q: want UID:GID", s)
	}
	uid, err1 := strconv.ParseUint(u, 10, 32)
	gid, err2 := strconv.ParseUint(g, 10, 32)
	if err1 != nil || err2 != nil {
		return nil, fmt.Errorf("-as %q: want numeric UID:GID", s)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}, nil
}
