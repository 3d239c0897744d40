// Package mounts cleans up the tmpfs mounts that the local
// executor puts on each call's out/ dir (localexec/outdir.go): a test whose
// agent or executor died before releasing its calls would otherwise leave
// them mounted, and removing its dir would fail with EBUSY. Tests and the
// dev agent (which removes its data dir when it stops) use it.
package mounts

import (
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// UnmountUnder detaches every mount below dir (not dir itself) and answers
// how many it detached. Errors are ignored: it runs in cleanups, where the
// RemoveAll that follows reports what is left.
func UnmountUnder(dir string) int {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return 0
	}
	if real, err := filepath.EvalSymlinks(dir); err == nil {
		dir = real
	}
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return 0
	}
	n := 0
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		// Field 5 is the mount point, with spaces escaped as \040.
		mp := strings.ReplaceAll(f[4], `\040`, " ")
		if strings.HasPrefix(mp, dir+"/") && unix.Unmount(mp, unix.MNT_DETACH) == nil {
			n++
		}
	}
	return n
}
