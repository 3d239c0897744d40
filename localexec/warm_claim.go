package localexec

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"golang.org/x/sys/unix"

	"github.com/hyperfunc/hyperfunc/executor"
)

// Handing one call to one warm sandbox, once.

// startWarm hands the call to a ready sandbox: check that it still runs,
// claim its dir (the atomic step), rename its container to the call's
// name, write the envelope. errWarmMiss: nothing ran and nothing of the
// call is left; other errors come after the claim.
func (e *Executor) startWarm(ctx context.Context, c *call, spec executor.Spec, sb *sandbox, args []string, limit int64) (executor.Handle, error) {
	ins, err := e.cli.ContainerInspect(ctx, sb.name)
	if err != nil || ins.State == nil || !ins.State.Running || ins.ID != sb.ref {
		e.log.Debug("a warm sandbox is not running; discarded", "container", sb.name, "err", err)
		e.discard(sb)
		if err != nil && engineDown(ctx, err) {
			return executor.Handle{}, err
		}
		return executor.Handle{}, errWarmMiss
	}
	dir := filepath.Join(sb.stateDir, spec.CallID)
	if err := unix.Renameat2(unix.AT_FDCWD, sb.dir, unix.AT_FDCWD, dir, unix.RENAME_NOREPLACE); err != nil {
		if errors.Is(err, unix.EEXIST) {
			// The call has a dir already (a retry after a cold attempt):
			// the cold path takes over that one.
			e.giveBack(spec.Function.ID, sb)
		}
		// ENOENT: another leader claimed this sandbox.
		e.log.Debug("claiming a warm sandbox", "container", sb.name, "err", err)
		return executor.Handle{}, errWarmMiss
	}
	c.setRef(sb.ref)
	if err := e.cli.ContainerRename(ctx, sb.ref, containerName(spec.CallID)); err != nil {
		sb.hangUp()
		if !cerrdefs.IsConflict(err) {
			// The engine failed us (the rename may have happened or not):
			// all stays as it is. A retried Start prepares this very dir
			// (the call's) and writes the envelope; whichever shim finds it
			// first, this sandbox's or a new container's, runs it, once
			// (both claim the shared out/.started), and the result is in
			// the shared out/ for either's watcher.
			return executor.Handle{}, fmt.Errorf("rename warm container: %w", err)
		}
		// Another container has the call's name: another leader started
		// it. If it has a dir of its own, this sandbox and its dir serve
		// nothing and go. If it shares this dir (it was prepared after our
		// claim, on the same state dir), this sandbox stays: it may be the
		// one to run the envelope written there, once, as above.
		if other, ierr := e.cli.ContainerInspect(ctx, containerName(spec.CallID)); ierr == nil && targetOf(spec.CallID, other).dir != dir {
			rctx, cancel := context.WithTimeout(e.ctx, 30*time.Second)
			if rerr := e.cli.ContainerRemove(rctx, sb.ref, container.RemoveOptions{Force: true}); rerr == nil || cerrdefs.IsNotFound(rerr) {
				if derr := removeCallDir(dir); derr != nil {
					e.log.Warn("removing a warm sandbox's dir", "err", derr)
				}
			}
			cancel()
		}
		return e.startExisting(ctx, c, spec, args, limit)
	}
	if reason, msg := c.stopped(); reason != "" {
		// Canceled while we claimed it: as a cold call canceled before its
		// start, its dir is claimed so that nothing runs there.
		sb.hangUp()
		if _, err := claimNew(dir); err != nil {
			e.log.Warn("claiming the dir of a canceled call", "call", c.id, "err", err)
		}
		e.kill(c, sb.ref)
		return e.refuse(spec, reason, errors.New(msg))
	}
	if err := e.writeEnvelope(dir, spec, args, limit); err != nil {
		sb.hangUp()
		return executor.Handle{}, err
	}
	sb.ring()
	e.wg.Add(1)
	go e.watch(c, watchArgs{
		id: sb.ref, dir: dir, startedAt: time.Now(), timeout: spec.Function.Timeout,
		limit: limit, sendRunning: true,
	})
	return executor.Handle{CallID: spec.CallID, Ref: sb.ref}, nil
}

// claimNew creates out/.started as the shim does before it runs; true when
// this call created it (then no shim ever runs a command in this dir).
func claimNew(dir string) (bool, error) {
	f, err := os.OpenFile(filepath.Join(dir, outDir, ".started"), os.O_WRONLY|os.O_CREATE|os.O_EXCL|noFollow, 0o644)
	if errors.Is(err, os.ErrExist) {
		return false, nil
	}
	if err != nil {
		return false, errors.New("claiming the call dir failed")
	}
	return true, f.Close()
}

// isWarm says whether a container was booted as a warm sandbox.
func isWarm(labels map[string]string) bool { return labels[labelWarm] != "" }

// warmCallDir is the dir of the call a claimed warm container serves.
func warmCallDir(labels map[string]string, callID string) string {
	st := labels[labelWarmState]
	if st == "" || !filepath.IsAbs(st) {
		return ""
	}
	return filepath.Join(st, callID)
}

// hasEnvelope says whether the call's envelope was written to dir.
func hasEnvelope(dir string) bool {
	_, err := os.Lstat(filepath.Join(dir, inDir, envelopeFile))
	return err == nil
}
