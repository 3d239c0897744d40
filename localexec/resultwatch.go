package localexec

import (
	"context"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// watchResult returns a channel closed once resultReady(dir) holds, found
// by inotify on the call's out/ dir (the shim renames result.json into
// place; the host's kernel sees the gVisor gofer's writes). Nil, a channel
// that never fires, when inotify is not available: the container's exit
// is then the only signal, as before. It stops with ctx.
func watchResult(ctx context.Context, dir string) <-chan struct{} {
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		return nil
	}
	out := filepath.Join(dir, outDir)
	if _, err := unix.InotifyAddWatch(fd, out, unix.IN_MOVED_TO|unix.IN_CLOSE_WRITE|unix.IN_CREATE|unix.IN_DONT_FOLLOW|unix.IN_ONLYDIR); err != nil {
		unix.Close(fd)
		return nil
	}
	f := os.NewFile(uintptr(fd), "inotify") // non-blocking: Close ends a Read
	ready := make(chan struct{})
	go func() {
		<-ctx.Done()
		f.Close()
	}()
	go func() {
		buf := make([]byte, 4096)
		for {
			// Checked before each read: the result may have been written
			// before the watch was added.
			if resultReady(dir) {
				close(ready)
				return
			}
			if _, err := f.Read(buf); err != nil {
				return // closed
			}
		}
	}()
	return ready
}
