package localexec_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"
	"github.com/hyperfunc/hyperfunc/executor"
	"github.com/hyperfunc/hyperfunc/localexec"
)

// warmSetup is an executor of a cluster of its own (its warm sandboxes are
// no other test's) and a function of the busybox image.
func warmSetup(t *testing.T) (*localexec.Executor, *client.Client, string, executor.Function) {
	t.Helper()
	_, cli, img := setup(t)
	cluster := "warm" + newCallID(t)
	// Registered first, so it runs after the executor's Close.
	t.Cleanup(func() { removeCluster(cli, cluster) })
	e := newClusterExec(t, cli, cluster, stateDir)
	fn := executor.Function{ID: "tester/" + cluster, Owner: "tester", Name: cluster, Image: img, CPU: 1000, MemoryMB: 128,
		Command: []string{"cat"}}
	return e, cli, cluster, fn
}

func removeCluster(cli *client.Client, cluster string) {
	list, _ := cli.ContainerList(context.Background(), container.ListOptions{All: true,
		Filters: filters.NewArgs(filters.Arg("label", executor.LabelCluster+"="+cluster))})
	for _, c := range list {
		_ = cli.ContainerRemove(context.Background(), c.ID, container.RemoveOptions{Force: true})
	}
}

// starts counts the engine's start events per container of a cluster from
// now on; stop it to read the counts.
func starts(t *testing.T, cli *client.Client, cluster string) func() map[string]int {
	ctx, cancel := context.WithCancel(context.Background())
	msgs, errs := cli.Events(ctx, events.ListOptions{Filters: filters.NewArgs(
		filters.Arg("type", "container"), filters.Arg("event", "start"),
		filters.Arg("label", executor.LabelCluster+"="+cluster))})
	var mu sync.Mutex
	n := map[string]int{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case m := <-msgs:
				mu.Lock()
				n[m.Actor.ID]++
				mu.Unlock()
			case <-errs:
				return
			}
		}
	}()
	return func() map[string]int {
		// Every start so far is in the stream before a later event: a
		// marker container's start would do, but the engine also orders
		// its events, so a short drain through a list call is enough.
		_, _ = cli.ContainerList(context.Background(), container.ListOptions{})
		cancel()
		<-done
		mu.Lock()
		defer mu.Unlock()
		return n
	}
}

// oneSandbox sets a pool of one for fn and returns its container's ID,
// once it is ready.
func oneSandbox(t *testing.T, e *localexec.Executor, cli *client.Client, cluster string, fn executor.Function) string {
	t.Helper()
	e.SetWarm([]executor.WarmTarget{{Function: fn, N: 1, StdoutLimit: 1 << 20}})
	ready(t, e, fn.ID, 1)
	list, err := cli.ContainerList(context.Background(), container.ListOptions{Filters: filters.NewArgs(
		filters.Arg("label", executor.LabelCluster+"="+cluster))})
	if err != nil || len(list) != 1 {
		t.Fatalf("warm containers: %d, %v", len(list), err)
	}
	return list[0].ID
}

func ready(t *testing.T, e *localexec.Executor, fn string, n int) {
	t.Helper()
	eventually(t, 2*time.Minute, "warm pool of "+fn+" ready", func() bool { return e.Warm().Ready[fn] == n })
}

// warmSpec is a call of fn (which runs cat) with stdin in.
func warmSpec(t *testing.T, cli *client.Client, fn executor.Function, in string) executor.Spec {
	s := spec(t, cli, fn.Image)
	s.Function = fn
	s.Stdin = []byte(in)
	return s
}

// onImage checks that the container of h was created from img.
func onImage(t *testing.T, cli *client.Client, h executor.Handle, img string) {
	t.Helper()
	ins, err := cli.ContainerInspect(context.Background(), h.Ref)
	if err != nil || ins.Config.Image != img {
		t.Fatalf("the call ran in a container of image %q (%v), want %q", ins.Config.Image, err, img)
	}
}

// A call takes a pre-started sandbox, and no sandbox serves two calls:
// each call's container is distinct and was started exactly once.
func TestWarmSandboxServesOneCall(t *testing.T) {
	e, cli, cluster, fn := warmSetup(t)
	count := starts(t, cli, cluster)
	e.SetWarm([]executor.WarmTarget{{Function: fn, N: 2, StdoutLimit: 1 << 20}})
	ready(t, e, fn.ID, 2)
	var specs []executor.Spec
	for i := 0; i < 4; i++ {
		s := warmSpec(t, cli, fn, "")
		s.Stdin = []byte("call " + s.CallID)
		specs = append(specs, s)
	}
	refs := map[string]string{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	errs := make(chan error, len(specs))
	for _, s := range specs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			h, err := e.Start(ctx, s)
			if err != nil {
				errs <- err
				return
			}
			mu.Lock()
			refs[s.CallID] = h.Ref
			mu.Unlock()
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("start: %v", err)
	}
	got := map[string]executor.Event{}
	deadline := time.After(2 * time.Minute)
	for len(got) < len(specs) {
		select {
		case ev := <-e.Events():
			if ev.Kind == executor.Finished || ev.Kind == executor.Failed {
				got[ev.CallID] = ev
			}
		case <-deadline:
			t.Fatalf("%d of %d calls ended", len(got), len(specs))
		}
	}
	seen := map[string]bool{}
	for _, s := range specs {
		ev := got[s.CallID]
		if ev.Kind != executor.Finished || string(ev.Stdout) != string(s.Stdin) {
			t.Fatalf("call %s: %v %q %q stdout %q", s.CallID, ev.Kind, ev.Reason, ev.Message, ev.Stdout)
		}
		if seen[refs[s.CallID]] {
			t.Fatalf("container %s served two calls", refs[s.CallID])
		}
		seen[refs[s.CallID]] = true
	}
	if st := e.Warm(); st.Hits < 2 {
		t.Fatalf("warm hits %d, want at least the 2 sandboxes ready before the calls", st.Hits)
	}
	for id, n := range count() {
		if n != 1 {
			t.Fatalf("container %s started %d times", id, n)
		}
	}
	var hs []executor.Handle
	for _, s := range specs {
		hs = append(hs, executor.Handle{CallID: s.CallID, Ref: refs[s.CallID]})
	}
	release(t, e, cli, hs...)
	// Refill after each use: the pool is back to its size, and the engine
	// holds exactly that many sandboxes, not one more.
	ready(t, e, fn.ID, 2)
	list, err := cli.ContainerList(context.Background(), container.ListOptions{All: true, Filters: filters.NewArgs(
		filters.Arg("label", executor.LabelCluster+"="+cluster))})
	if err != nil || len(list) != 2 {
		t.Fatalf("%d containers of the cluster after the refill (%v), want the 2 of the pool", len(list), err)
	}
}

// A sandbox killed before its call is replaced, and the call still runs,
// once, in another container.
func TestWarmSandboxDiedBeforeItsCall(t *testing.T) {
	e, cli, cluster, fn := warmSetup(t)
	dead := oneSandbox(t, e, cli, cluster, fn)
	if err := cli.ContainerKill(context.Background(), dead, "KILL"); err != nil {
		t.Fatal(err)
	}
	s := warmSpec(t, cli, fn, "once\n")
	count := starts(t, cli, cluster)
	h := start(t, e, s)
	ev := final(t, e, s.CallID)
	if ev.Kind != executor.Finished || string(ev.Stdout) != "once\n" || h.Ref == dead {
		t.Fatalf("got %v %q stdout %q ref %s (dead %s)", ev.Kind, ev.Message, ev.Stdout, h.Ref, dead)
	}
	for id, n := range count() {
		if n != 1 {
			t.Fatalf("container %s started %d times", id, n)
		}
	}
	release(t, e, cli, h)
	ready(t, e, fn.ID, 1)
}

// An update of the function drains its pool: a call of the new version
// never runs in a sandbox booted for the old one, even before SetWarm
// hears of the update.
func TestWarmUpdateNeverRunsTheOldVersion(t *testing.T) {
	e, cli, _, fn := warmSetup(t)
	fn.Command = []string{"busybox", "id", "-u"}
	e.SetWarm([]executor.WarmTarget{{Function: fn, N: 1, StdoutLimit: 1 << 20}})
	ready(t, e, fn.ID, 1)
	v2 := fn
	v2.User = "root" // the old sandbox runs as nobody
	// And another image reference (the same content under a new tag: the
	// container that runs the call names which one it was created from).
	v2.Image = fn.Image + "-v2-" + newCallID(t)
	if err := cli.ImageTag(context.Background(), fn.Image, v2.Image); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = cli.ImageRemove(context.Background(), v2.Image, image.RemoveOptions{}) })
	s := warmSpec(t, cli, v2, "")
	h := start(t, e, s)
	if ev := final(t, e, s.CallID); ev.Kind != executor.Finished || string(ev.Stdout) != "0\n" {
		t.Fatalf("got %v %q stdout %q", ev.Kind, ev.Message, ev.Stdout)
	}
	onImage(t, cli, h, v2.Image)
	release(t, e, cli, h)
	if st := e.Warm(); st.Hits != 0 || st.Misses != 1 {
		t.Fatalf("hits %d misses %d, want 0 and 1", st.Hits, st.Misses)
	}
	e.SetWarm([]executor.WarmTarget{{Function: v2, N: 1, StdoutLimit: 1 << 20}})
	ready(t, e, fn.ID, 1)
	s = warmSpec(t, cli, v2, "")
	h = start(t, e, s)
	if ev := final(t, e, s.CallID); ev.Kind != executor.Finished || string(ev.Stdout) != "0\n" {
		t.Fatalf("got %v %q stdout %q", ev.Kind, ev.Message, ev.Stdout)
	}
	onImage(t, cli, h, v2.Image)
	release(t, e, cli, h)
	if st := e.Warm(); st.Hits != 1 {
		t.Fatalf("hits %d after SetWarm of the new version, want 1", st.Hits)
	}
}

// Two leaders (an old one that has not noticed it lost, and the new one
// that took its sandboxes over) race for one sandbox: each call runs
// once, in distinct containers, each started once.
func TestWarmSandboxTwoLeaders(t *testing.T) {
	old, cli, cluster, fn := warmSetup(t)
	old.SetWarm([]executor.WarmTarget{{Function: fn, N: 1, StdoutLimit: 1 << 20}})
	ready(t, old, fn.ID, 1)
	dir, err := os.MkdirTemp("", "localexec-leader-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	cur := newClusterExec(t, cli, cluster, dir)
	cur.SetWarm([]executor.WarmTarget{{Function: fn, N: 1, StdoutLimit: 1 << 20}})
	ready(t, cur, fn.ID, 1) // adopted, not booted: the same container
	count := starts(t, cli, cluster)
	a, b := warmSpec(t, cli, fn, "a\n"), warmSpec(t, cli, fn, "b\n")
	var wg sync.WaitGroup
	var ha, hb executor.Handle
	var ea, eb error
	wg.Add(2)
	go func() { defer wg.Done(); ha, ea = old.Start(context.Background(), a) }()
	go func() { defer wg.Done(); hb, eb = cur.Start(context.Background(), b) }()
	wg.Wait()
	if ea != nil || eb != nil {
		t.Fatalf("start: %v, %v", ea, eb)
	}
	if ev := final(t, old, a.CallID); ev.Kind != executor.Finished || string(ev.Stdout) != "a\n" {
		t.Fatalf("a: %v %q %q", ev.Kind, ev.Message, ev.Stdout)
	}
	if ev := final(t, cur, b.CallID); ev.Kind != executor.Finished || string(ev.Stdout) != "b\n" {
		t.Fatalf("b: %v %q %q", ev.Kind, ev.Message, ev.Stdout)
	}
	if ha.Ref == hb.Ref {
		t.Fatalf("one container %s served both calls", ha.Ref)
	}
	for id, n := range count() {
		if n != 1 {
			t.Fatalf("container %s started %d times", id, n)
		}
	}
	// Both pools held the one sandbox; it served exactly one of the calls.
	if hits := old.Warm().Hits + cur.Warm().Hits; hits != 1 {
		t.Fatalf("%d warm hits, want 1", hits)
	}
	_ = old.Release(context.Background(), []executor.Handle{ha})
	_ = cur.Release(context.Background(), []executor.Handle{hb})
}

// A warm sandbox has exactly the spec of a cold container of the same
// function: the same host config (runtime, network none, caps, no new
// privileges, pids, memory, CPU, read-only root, /tmp, binds at the same
// container paths, log driver) and the same user, image and workdir; only
// its name, its labels and the shim's -wait differ. And the command runs
// inside it as the function's user without capabilities.
func TestWarmSpecIsTheColdSpec(t *testing.T) {
	e, cli, cluster, fn := warmSetup(t)
	fn.Command = []string{"sh", "-c", "id -u; grep CapEff /proc/self/status"}
	fn.Workdir = "/tmp"
	cold := warmSpec(t, cli, fn, "")
	h := start(t, e, cold)
	if ev := final(t, e, cold.CallID); ev.Kind != executor.Finished {
		t.Fatalf("cold: %v %s", ev.Kind, ev.Message)
	}
	ci, err := cli.ContainerInspect(context.Background(), h.Ref)
	if err != nil {
		t.Fatal(err)
	}
	release(t, e, cli, h)
	wi, err := cli.ContainerInspect(context.Background(), oneSandbox(t, e, cli, cluster, fn))
	if err != nil {
		t.Fatal(err)
	}
	targets := func(binds []string) []string {
		var out []string
		for _, b := range binds {
			parts := strings.Split(b, ":")
			out = append(out, strings.Join(parts[1:], ":"))
		}
		return out
	}
	chc, whc := *ci.HostConfig, *wi.HostConfig
	if fmt.Sprint(targets(chc.Binds)) != fmt.Sprint(targets(whc.Binds)) || chc.Binds[0] != whc.Binds[0] {
		t.Errorf("binds: cold %v, warm %v", chc.Binds, whc.Binds)
	}
	chc.Binds, whc.Binds = nil, nil
	if !reflect.DeepEqual(chc, whc) {
		t.Errorf("host config differs:\ncold %+v\nwarm %+v", chc, whc)
	}
	cc, wc := ci.Config, wi.Config
	if cc.User != wc.User || cc.Image != wc.Image || cc.WorkingDir != wc.WorkingDir || wc.User != "65534:65534" {
		t.Errorf("config: cold user %q image %q workdir %q; warm %q %q %q", cc.User, cc.Image, cc.WorkingDir, wc.User, wc.Image, wc.WorkingDir)
	}
	if want := append([]string{cc.Entrypoint[0], "-wait"}, cc.Entrypoint[1:]...); fmt.Sprint(wc.Entrypoint) != fmt.Sprint(want) {
		t.Errorf("entrypoint: warm %v, want %v", wc.Entrypoint, want)
	}
	for _, k := range []string{executor.LabelFunction, executor.LabelManaged, executor.LabelCluster, executor.LabelExecutor} {
		if cc.Labels[k] != wc.Labels[k] {
			t.Errorf("label %s: cold %q warm %q", k, cc.Labels[k], wc.Labels[k])
		}
	}
	s := warmSpec(t, cli, fn, "")
	h = start(t, e, s)
	ev := final(t, e, s.CallID)
	lines := strings.Split(strings.TrimSpace(string(ev.Stdout)), "\n")
	if ev.Kind != executor.Finished || h.Ref != wi.ID || len(lines) != 2 || lines[0] != "65534" ||
		strings.Trim(strings.TrimPrefix(lines[1], "CapEff:"), "\t 0") != "" {
		t.Fatalf("in the warm sandbox: %v %q ref %s (warm %s)", ev.Kind, ev.Stdout, h.Ref, wi.ID)
	}
	release(t, e, cli, h)
}

// claimHalfway does what a leader that died in the middle of a warm claim
// did: the sandbox's dir moved to the call's, the container renamed to the
// call, but no envelope written.
func claimHalfway(t *testing.T, cli *client.Client, sandbox, callID string) {
	t.Helper()
	ins, err := cli.ContainerInspect(context.Background(), sandbox)
	if err != nil {
		t.Fatal(err)
	}
	dir := ins.Config.Labels["io.hyperfunc.call-dir"]
	if err := os.Rename(dir, filepath.Join(ins.Config.Labels["io.hyperfunc.warm-state"], callID)); err != nil {
		t.Fatal(err)
	}
	if err := cli.ContainerRename(context.Background(), sandbox, "hf-"+callID); err != nil {
		t.Fatal(err)
	}
}

// A leader died after claiming a sandbox for a call but before handing it
// the envelope. The next leader's Reconcile finds the sandbox by the
// call's name: nothing ran and nothing can (it claims the dir first), so
// the sandbox goes and the call is NotFound, to be started again.
func TestWarmClaimedWithoutEnvelopeReconciled(t *testing.T) {
	e, cli, cluster, fn := warmSetup(t)
	sandbox := oneSandbox(t, e, cli, cluster, fn)
	e.DropWarm() // the leader is gone
	s := warmSpec(t, cli, fn, "x")
	claimHalfway(t, cli, sandbox, s.CallID)
	next := newClusterExec(t, cli, cluster, stateDir)
	ev := reconcileOne(t, next, executor.Handle{CallID: s.CallID})
	if ev.Kind != executor.NotFound {
		t.Fatalf("reconcile: %+v", ev)
	}
	if _, err := cli.ContainerInspect(context.Background(), sandbox); err == nil {
		t.Fatal("the half-claimed sandbox is still there")
	}
	// Started again, the call runs once, cold.
	h := start(t, next, s)
	if ev := final(t, next, s.CallID); ev.Kind != executor.Finished || string(ev.Stdout) != "x" || h.Ref == sandbox {
		t.Fatalf("restart: %v %q %q ref %s", ev.Kind, ev.Message, ev.Stdout, h.Ref)
	}
	release(t, next, cli, h)
}

// The same, but the call's Start comes again (a retry, the next leader's
// dispatcher): it finds the sandbox by name and hands it the envelope.
func TestWarmClaimedWithoutEnvelopeStarted(t *testing.T) {
	e, cli, cluster, fn := warmSetup(t)
	sandbox := oneSandbox(t, e, cli, cluster, fn)
	e.DropWarm()
	s := warmSpec(t, cli, fn, "y")
	claimHalfway(t, cli, sandbox, s.CallID)
	next := newClusterExec(t, cli, cluster, stateDir)
	h := start(t, next, s)
	if ev := final(t, next, s.CallID); ev.Kind != executor.Finished || string(ev.Stdout) != "y" || h.Ref != sandbox {
		t.Fatalf("start: %v %q %q ref %s, want the sandbox %s", ev.Kind, ev.Message, ev.Stdout, h.Ref, sandbox)
	}
	release(t, next, cli, h)
}
