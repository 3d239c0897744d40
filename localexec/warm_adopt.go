package localexec

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/hyperfunc/hyperfunc/executor"
)

// adoptOrphans, once per leadership (after the first SetWarm), looks at the warm containers of this
// cluster on the engine: unclaimed (still named hf-warm-*, dir still in
// .warm), running, of a current function version and wanted: taken into
// its pool; otherwise removed. Claimed ones are calls: Reconcile and
// CleanOrphans handle them.
func (e *Executor) adoptOrphans() {
	w := &e.warm
	w.mu.Lock()
	done := w.adopted || !w.set
	w.mu.Unlock()
	if done {
		return
	}
	ctx, cancel := context.WithTimeout(e.ctx, time.Minute)
	defer cancel()
	list, err := e.ownContainers(ctx, labelWarm)
	if err != nil {
		e.log.Warn("listing warm sandboxes", "err", err)
		return
	}
	live := map[string]bool{}
	for _, s := range list {
		name := ""
		if len(s.Names) > 0 {
			name = strings.TrimPrefix(s.Names[0], "/")
		}
		if !strings.HasPrefix(name, warmNamePrefix) {
			continue // claimed: a call's container
		}
		sb := &sandbox{id: s.Labels[labelWarm], name: name, ref: s.ID, dir: s.Labels[labelCallDir],
			stateDir: s.Labels[labelWarmState], spec: s.Labels[labelWarmSpec], stop: func() {}}
		fnID := s.Labels[executor.LabelFunction]
		if s.State == "running" && name == warmNamePrefix+sb.id {
			e.attach(sb) // before it is in a pool, where a Start may ring it
		}
		w.mu.Lock()
		p := w.pools[fnID]
		ok := s.State == "running" && name == warmNamePrefix+sb.id && p != nil && p.spec == sb.spec &&
			len(p.ready)+p.booting < p.target.N && isDir(sb.dir)
		if ok {
			p.ready = append(p.ready, sb)
			live[sb.dir] = true
		}
		w.mu.Unlock()
		if ok {
			e.watchSandbox(fnID, sb)
		} else {
			e.discard(sb)
		}
	}
	// Dirs of sandboxes whose container is gone.
	if entries, err := os.ReadDir(e.warmDir()); err == nil {
		for _, d := range entries {
			dir := filepath.Join(e.warmDir(), d.Name())
			if d.IsDir() && !live[dir] && !e.isReady(dir) {
				if err := removeCallDir(dir); err != nil {
					e.log.Warn("removing a warm dir", "err", err)
				}
			}
		}
	}
	w.mu.Lock()
	w.adopted = true
	w.mu.Unlock()
}

// isReady says whether dir belongs to a sandbox in a pool (or booting: its
// dir exists before its container).
func (e *Executor) isReady(dir string) bool {
	w := &e.warm
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, p := range w.pools {
		if p.booting > 0 {
			return true
		}
		for _, sb := range p.ready {
			if sb.dir == dir {
				return true
			}
		}
	}
	return false
}

func isDir(p string) bool {
	st, err := os.Lstat(p)
	return err == nil && st.IsDir()
}

// errWarmMiss: the sandbox could not take the call; nothing ran, the
// caller tries another one or a cold start.
var errWarmMiss = errors.New("warm sandbox unusable")
