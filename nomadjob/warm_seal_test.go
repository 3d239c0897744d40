package nomadjob_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/hyperfunc/hyperfunc/executor"
	"github.com/hyperfunc/hyperfunc/nomadjob"
	"github.com/hyperfunc/hyperfunc/nomadjob/nomadtest"
)

// TestWarmSealedReadBeforeEnd: a warm call of a sealed function (the
// default user, nobody) is read once its shim printed the seal, while its
// allocation still runs (the double holds every end here: a call that
// waited for it would never finish).
func TestWarmSealedReadBeforeEnd(t *testing.T) {
	e, f := newWarmEnv(t, 1, "sealed", "sh", "-c", "echo out; cat; echo err >&2")
	e.srv.HoldEnds()
	t.Cleanup(e.srv.ReleaseEnds)
	s := spec("c-sealed", f, "in")
	ev := e.startFinal(s)
	if ev.Kind != executor.Finished || string(ev.Stdout) != "out\nin" || ev.Stderr != "err\n" {
		t.Fatalf("sealed call: %+v %q", ev, ev.Stdout)
	}
	if st := e.srv.AllocStatus(ev.Ref); st != "running" || e.srv.EarlyReads() == 0 {
		t.Fatalf("read with the allocation %q, %d early reads: want running, some", st, e.srv.EarlyReads())
	}
	if n := e.srv.Executions(s.CallID); n != 1 {
		t.Fatalf("ran %d times", n)
	}
}

// TestWarmUnsealedNotReadBeforeEnd: a function running as root could write
// the seal itself (hf-shim's stdout is its own uid's): its sandbox is read
// only at the allocation's end, forged seal or not.
func TestWarmUnsealedNotReadBeforeEnd(t *testing.T) {
	e := newEnv(t)
	f := fn("forger", nomadtest.ForgeSealCommand)
	f.User = "root"
	e.register(f)
	e.ex.SetWarm([]executor.WarmTarget{{Function: f, N: 1}})
	waitReady(t, e.ex, f.ID, 1)
	e.srv.HoldEnds()
	t.Cleanup(e.srv.ReleaseEnds)
	s := spec("c-forger", f, "")
	if _, err := e.ex.Start(ctx(t), s); err != nil {
		t.Fatal(err)
	}
	// The watch found result.json (the command ran, the forged seal is
	// on the task's stdout): had it taken the seal, it would have listed
	// alloc before that stat.
	waitFor(t, hang, "the watch to see result.json", func() bool {
		return e.srv.Requests("fs/stat "+nomadjob.ResultFilePath) > 0
	})
	if n := e.srv.EarlyReads(); n != 0 || e.col.finals(s.CallID) != 0 {
		t.Fatalf("a root function's sandbox was read while it ran (%d early reads, %d finals)", n, e.col.finals(s.CallID))
	}
	e.srv.ReleaseEnds()
	if ev := e.warmFinal(e.col, s.CallID); ev.Kind != executor.Finished || !strings.Contains(ev.Ref, nomadjob.WarmSuffix) {
		t.Fatalf("forger: %+v", ev)
	}
	if n := e.srv.EarlyReads(); n != 0 {
		t.Fatalf("%d early reads", n)
	}
}

// TestWarmSealedLinkNotRead: a sealed sandbox is checked as a terminal one
// before it is read: a link left where outputs are read fails the call.
func TestWarmSealedLinkNotRead(t *testing.T) {
	secret := filepath.Join(t.TempDir(), "host-secret")
	if err := os.WriteFile(secret, []byte("HOST-SECRET-CONTENT"), 0o600); err != nil {
		t.Fatal(err)
	}
	e, f := newWarmEnv(t, 1, "sealed-link", nomadtest.LinkCommand, "stdout", secret)
	e.srv.HoldEnds()
	t.Cleanup(e.srv.ReleaseEnds)
	ev := e.startFinal(spec("c-sealed-link", f, ""))
	if ev.Kind != executor.Failed || !strings.Contains(ev.Message, "alloc/data/stdout is L") {
		t.Fatalf("sealed call with a link: %+v", ev)
	}
	if strings.Contains(fmt.Sprintf("%+v %s %s", ev, ev.Stdout, ev.Stderr), "HOST-SECRET") {
		t.Fatalf("the host file reached the outcome: %+v", ev)
	}
}

// TestSealedTasks: which functions' tasks are sealed (the shim as root with
// three capabilities, -as UID:GID) and which run wholly as their user.
func TestSealedTasks(t *testing.T) {
	for _, tc := range []struct {
		user   string
		noSeal bool
		as     string // "" : not sealed
	}{
		{user: "", as: "65534:65534"},
		{user: "1000:1000", as: "1000:1000"},
		{user: "root"},
		{user: "0"},
		{user: "1000"},    // the group is the image's: Docker reads it
		{user: "app:app"}, // names are the image's
		{user: "1000:0"},  // group root
		{user: "0:1000"},  // user root
		{user: "", noSeal: true},
	} {
		e := newEnv(t)
		if tc.noSeal {
			e.ex = e.executorWith(func(c *nomadjob.Config) { c.NoSeal = true })
		}
		f := fn("u", "true")
		f.User = tc.user
		e.register(f)
		task := e.srv.Job(nomadjob.JobID("", f)).TaskGroups[0].Tasks[0]
		ep := fmt.Sprint(task.Config["entrypoint"])
		if tc.as == "" {
			if strings.Contains(ep, "-as") || task.User != f.RunAs() || task.Config["cap_add"] != nil {
				t.Errorf("user %q (no seal %v): entrypoint %s, user %q, cap_add %v; want it unsealed", tc.user, tc.noSeal, ep, task.User, task.Config["cap_add"])
			}
			continue
		}
		if !strings.Contains(ep, "-as "+tc.as+" ") || task.User != "0:0" || fmt.Sprint(task.Config["cap_add"]) != "[SETUID SETGID KILL]" {
			t.Errorf("user %q: entrypoint %s, user %q, cap_add %v; want sealed as %s", tc.user, ep, task.User, task.Config["cap_add"], tc.as)
		}
	}
}

// executorWith makes e's executor one whose config mod changed.
func (e *env) executorWith(mod func(*nomadjob.Config)) *nomadjob.Executor {
	e.t.Helper()
	cfg := e.config()
	mod(&cfg)
	ex, err := nomadjob.New(cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { _ = ex.Close() })
	return ex
}

// TestWarmUnsealedSandboxSealNotTrusted: a sandbox built unsealed (by an
// executor with NoSeal, or by a version without seals) runs the command as
// the shim's own uid, which forges the seal. A sealing executor that takes
// the pool over (a restart with another -nomad-no-seal, a new leader, an
// upgrade) must never read such a sandbox at its seal: it would read
// alloc/data while the function can still swap a file for a link to a host
// file (found in review: /root/hf-secret came back as a call's stdout on
// the real agent).
func TestWarmUnsealedSandboxSealNotTrusted(t *testing.T) {
	e := newEnv(t)
	f := fn("forger-adopted", nomadtest.ForgeSealCommand)
	unsealed := e.executorWith(func(c *nomadjob.Config) { c.NoSeal = true })
	if err := unsealed.Register(ctx(t), f); err != nil {
		t.Fatal(err)
	}
	unsealed.SetWarm([]executor.WarmTarget{{Function: f, N: 1}})
	waitReady(t, unsealed, f.ID, 1)
	child := unsealed.WarmChildren(f.ID)[0]
	// The unsealed executor goes away, its sandbox stays; the sealing one
	// takes the pool over.
	unsealed.DropWarm()
	_ = unsealed.Close()
	e.register(f)
	e.ex.SetWarm([]executor.WarmTarget{{Function: f, N: 1}})
	waitReady(t, e.ex, f.ID, 1)
	e.srv.HoldEnds()
	t.Cleanup(e.srv.ReleaseEnds)
	s := spec("c-forger-adopted", f, "")
	h, err := e.ex.Start(ctx(t), s)
	if err != nil {
		t.Fatal(err)
	}
	if h.Ref != child {
		// Not adopted: the call ran in a sandbox built sealed.
		e.srv.ReleaseEnds()
		if ev := e.warmFinal(e.col, s.CallID); ev.Kind != executor.Finished {
			t.Fatalf("forger: %+v", ev)
		}
		return
	}
	waitFor(t, hang, "the watch to see result.json", func() bool {
		return e.srv.Requests("fs/stat "+nomadjob.ResultFilePath) > 0 || e.col.finals(s.CallID) > 0
	})
	if n := e.srv.EarlyReads(); n != 0 || e.col.finals(s.CallID) != 0 {
		t.Fatalf("an unsealed sandbox was read at a forged seal while it ran (%d early reads, %d finals)", n, e.col.finals(s.CallID))
	}
	e.srv.ReleaseEnds()
	if ev := e.warmFinal(e.col, s.CallID); ev.Kind != executor.Finished {
		t.Fatalf("forger: %+v", ev)
	}
}

// TestWarmBootChecksVersion: another executor (a stale leader, another
// version) registers the warm job over this one's between its registration
// and a dispatch: the child runs that other version, so it never joins the
// pool; the warm job is registered again and the next sandbox is right.
func TestWarmBootChecksVersion(t *testing.T) {
	e := newEnv(t)
	f := fn("versioned", "echo", "v2")
	e.register(f)
	var once sync.Once
	stale := ""
	e.srv.BeforeDispatch = func(parent string) {
		if strings.HasSuffix(parent, nomadjob.WarmSuffix) {
			once.Do(func() {
				stale = parent
				e.srv.SetJobMeta(parent, nomadjob.MetaSpec, "0123456789ab")
			})
		}
	}
	e.ex.SetWarm([]executor.WarmTarget{{Function: f, N: 1}})
	waitReady(t, e.ex, f.ID, 1)
	if stale == "" {
		t.Fatal("no warm dispatch was seen")
	}
	ev := e.startFinal(spec("c-versioned", f, ""))
	if ev.Kind != executor.Finished || string(ev.Stdout) != "v2\n" || !strings.Contains(ev.Ref, nomadjob.WarmSuffix) {
		t.Fatalf("call: %+v %q", ev, ev.Stdout)
	}
	if got := e.srv.Job(ev.Ref).Meta[nomadjob.MetaSpec]; got == "0123456789ab" {
		t.Fatalf("the call ran in a sandbox of the other version (%s)", ev.Ref)
	}
}
