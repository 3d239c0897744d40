package bench

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hyperfunc/hyperfunc/api"
)

// TestMemoryIssue12 is the benchmark of issue 12 (memory that does not
// grow with the work), on 3 agent processes: see docs/BENCHMARKS.md. It is
// a test so its phases can share one cluster, skipped unless
// HF_BENCH_MEMORY names the phases to run ("all", or a comma list of big,
// restart, wipe, small, load). It reports numbers on lines starting with
// "MEM " and asserts only correctness (no call lost, outputs read back
// equal). Knobs: HF_BENCH_BIG_FNS (20), HF_BENCH_BIG_CALLS (55),
// HF_BENCH_SMALL_FNS (2), HF_BENCH_SMALL_CALLS (51300: they fill the
// 50 MiB output cache and the log cache's 100,000 entries; ~4 min per
// function at ~200 calls/s), HF_BENCH_LOAD_SECS (60).
func TestMemoryIssue12(t *testing.T) {
	phases := os.Getenv("HF_BENCH_MEMORY")
	if phases == "" {
		t.Skip("set HF_BENCH_MEMORY=all (or big,restart,wipe,small,load) to run; scripts/bench.sh does")
	}
	on := func(p string) bool {
		return phases == "all" || slices.Contains(strings.Split(phases, ","), p)
	}
	report("machine: %d cores, load average %s", numCPU(), loadAvg())
	if on("big") || on("restart") || on("wipe") {
		c := startProcCluster(t, 3, 0)
		fns := memBig(t, c, envInt("HF_BENCH_BIG_FNS", 20), envInt("HF_BENCH_BIG_CALLS", 55))
		if on("restart") {
			memRestart(t, c, fns, false)
		}
		if on("wipe") {
			memRestart(t, c, fns, true)
		}
		c.stopAll()
	}
	if on("small") {
		c := startProcCluster(t, 3, 0)
		memSmall(t, c, envInt("HF_BENCH_SMALL_FNS", 2), envInt("HF_BENCH_SMALL_CALLS", 51300))
		c.stopAll()
	}
	if on("load") {
		c := startProcCluster(t, 3, 1<<40)
		memLoad(t, c, time.Duration(envInt("HF_BENCH_LOAD_SECS", 60))*time.Second)
		c.stopAll()
	}
}

// report prints one result line; scripts/bench.sh keeps the "MEM " lines.
func report(format string, args ...any) {
	fmt.Printf("MEM "+format+"\n", args...)
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// reportMem prints each node's RSS (anon/file), Go heap in use and disk
// state, and returns the largest RSS.
func reportMem(c *procCluster, label string) float64 {
	var worst float64
	for _, nd := range c.nodes {
		if nd.cmd == nil {
			continue
		}
		m := c.mem(nd)
		ls := c.metrics(nd)
		report("%-28s %s rss %6.1f MiB (anon %6.1f file %5.1f) heap_inuse %6.1f MiB  state_disk %7.1f MiB raft_log %7.1f MiB",
			label, nd.spec.NodeID, mib(float64(m.RSS)), mib(float64(m.Anon)), mib(float64(m.File)),
			mib(metricSum(ls, "go_memstats_heap_inuse_bytes")), mib(metricSum(ls, "hyperfunc_state_disk_bytes")),
			mib(metricSum(ls, "hyperfunc_raft_log_bytes")))
		worst = max(worst, mib(float64(m.RSS)))
	}
	return worst
}

// reportCaches prints the leader's cache fill of the functions named.
func reportCaches(c *procCluster, label string, fns []string) {
	ls := c.metrics(c.waitLeader())
	var out, logs float64
	for _, fn := range fns {
		out += metricSum(ls, "hyperfunc_function_cache_bytes", `function="`+fn+`"`, `cache="output"`)
		logs += metricSum(ls, "hyperfunc_function_cache_bytes", `function="`+fn+`"`, `cache="log"`)
	}
	n := float64(len(fns))
	report("%-28s caches per function: output %.1f MiB, log %.1f MiB", label, mib(out/n), mib(logs/n))
}

func createFunction(t testing.TB, c *procCluster, name string, command ...string) {
	t.Helper()
	if _, err := c.waitLeader().client.Functions().Create(context.Background(),
		&api.FunctionSpec{Name: name, Image: "bench/fake", Command: command}); err != nil {
		t.Fatalf("create %s: %v", name, err)
	}
}

// fill queues n async calls of fn with `workers` clients spread over the
// nodes, waits until all ended, and returns their IDs in queue order.
func fill(t testing.TB, c *procCluster, fn string, n, workers int) []string {
	t.Helper()
	ids := make([]string, n)
	var next atomic.Int64
	var firstErr atomic.Pointer[error]
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cl := c.nodes[w%len(c.nodes)].client
			for {
				i := int(next.Add(1)) - 1
				if i >= n || firstErr.Load() != nil {
					return
				}
				// A busy machine may see an election: try again a few
				// times (a retried call may run twice; the wait below
				// counts at least n).
				id, err := cl.Calls().Call(context.Background(), fn, nil, nil)
				for try := 0; err != nil && try < 5; try++ {
					time.Sleep(time.Second)
					id, err = cl.Calls().Call(context.Background(), fn, nil, nil)
				}
				if err != nil {
					firstErr.CompareAndSwap(nil, &err)
					return
				}
				ids[i] = id
			}
		}()
	}
	wg.Wait()
	if p := firstErr.Load(); p != nil {
		t.Fatalf("calling %s: %v", fn, *p)
	}
	// Not waitFor: calls that never end are a finding to report (after two
	// minutes without progress), and the other phases still run.
	var done int64
	for last := time.Now(); time.Since(last) < 2*time.Minute; time.Sleep(50 * time.Millisecond) {
		ld := c.leader()
		if ld == nil {
			continue
		}
		st, err := ld.client.Functions().Status(context.Background(), fn)
		if err != nil {
			continue
		}
		if st.Failed+st.Canceled > 0 {
			t.Errorf("%s: %d calls failed, %d canceled", fn, st.Failed, st.Canceled)
		}
		if st.Finished >= int64(n) && st.Pending+st.Running == 0 {
			return ids
		}
		if st.Finished > done {
			done, last = st.Finished, time.Now()
		}
	}
	t.Errorf("%s: %d of %d calls ended; the rest made no progress for 2 minutes", fn, done, n)
	report("STUCK %s: %d of %d calls ended; the rest made no progress for 2 minutes", fn, done, n)
	return ids
}

// settle lets the agents' once-a-second gauges and Go's scavenger catch up
// before a memory reading.
func settle() { time.Sleep(3 * time.Second) }

type bigFn struct {
	name string
	ids  []string
}

// memBig: 1 function, then N, whose 50 MiB output caches are full of 1
// MiB outputs.
func memBig(t *testing.T, c *procCluster, nFns, calls int) []bigFn {
	var fns []bigFn
	var names []string
	var rss1 float64
	start := time.Now()
	w := watchLeaders(c)
	for i := 0; i < nFns; i++ {
		name := fmt.Sprintf("big%02d", i)
		createFunction(t, c, name, "output", strconv.Itoa(1<<20))
		fns = append(fns, bigFn{name, fill(t, c, name, calls, 4)})
		names = append(names, name)
		if i == 0 {
			settle()
			reportCaches(c, "1MiB x1 fn", names)
			rss1 = reportMem(c, "1MiB outputs, 1 function")
		}
	}
	settle()
	reportCaches(c, fmt.Sprintf("1MiB x%d fns", nFns), names)
	rssN := reportMem(c, fmt.Sprintf("1MiB outputs, %d functions", nFns))
	w.end()
	report("1MiB: %d functions x %d calls in %s; max RSS %.1f -> %.1f MiB, ratio %.2f (target <= 1.2, < 300 MiB); step-downs %d, elections %d",
		nFns, calls, time.Since(start).Round(time.Second), rss1, rssN, rssN/rss1, w.stepDowns.Load(), w.elections.Load())
	return fns
}

// memSmall: 1 KiB outputs filling output and log caches, for nFns
// functions one after the other; the slope per function is the point.
func memSmall(t *testing.T, c *procCluster, nFns, calls int) {
	var names []string
	var rss []float64
	for i := 0; i < nFns; i++ {
		name := fmt.Sprintf("small%02d", i)
		createFunction(t, c, name, "output", "1024")
		t0 := time.Now()
		fill(t, c, name, calls, 16)
		d := time.Since(t0)
		names = append(names, name)
		settle()
		reportCaches(c, fmt.Sprintf("1KiB fn %d", i+1), names[i:])
		rss = append(rss, reportMem(c, fmt.Sprintf("1KiB outputs, %d function(s)", i+1)))
		report("1KiB: function %d: %d calls in %s (%.0f calls/s)", i+1, calls, d.Round(time.Second), float64(calls)/d.Seconds())
	}
	if len(rss) > 1 {
		report("1KiB: max RSS %.1f MiB (1 fn) -> %.1f MiB (%d fns): %.1f MiB per extra full function",
			rss[0], rss[len(rss)-1], len(rss), (rss[len(rss)-1]-rss[0])/float64(len(rss)-1))
	}
}

// memRestart SIGKILLs a follower and starts it again on its data dir (or,
// wiped, on an empty one), and measures how long until it applied what
// the leader did; then reads a sample of outputs back from its own replica.
func memRestart(t *testing.T, c *procCluster, fns []bigFn, wipe bool) {
	what := "restart (SIGKILL, same data dir)"
	if wipe {
		what = "wiped node rejoins"
	}
	ld := c.waitLeader()
	f := c.follower()
	ldSt := c.raftStats(ld)
	report("%s: leader %s last_snapshot_index %s last_log_index %s", what, ld.spec.NodeID, ldSt["last_snapshot_index"], ldSt["last_log_index"])
	// The sample: the last 3 calls of each function whose output is cached.
	want := map[string]bool{}
	for _, fn := range fns {
		n := 0
		for i := len(fn.ids) - 1; i >= 0 && n < 3; i-- {
			if call, _, err := ld.client.Calls().Info(context.Background(), fn.ids[i], nil); err == nil && !call.Rotated {
				want[fn.ids[i]] = true
				n++
			}
		}
	}
	c.kill(f)
	if wipe {
		if err := os.RemoveAll(f.spec.DataDir); err != nil {
			t.Fatal(err)
		}
	}
	t0 := time.Now()
	c.start(f)
	var target uint64
	waitFor(t, 10*time.Minute, f.spec.NodeID+" catches up", func() bool {
		l, fs := c.raftStats(ld), c.raftStats(f)
		target = statUint(l, "applied_index")
		return fs != nil && target > 0 && statUint(fs, "applied_index") >= target
	})
	caught := time.Since(t0)
	c.waitHealthy(f, 2*time.Minute)
	healthy := time.Since(t0)
	// Raft counts an entry applied once it is handed to the FSM, which may
	// still be writing it: the sample read back equal is the real mark.
	wantOut := bytes.Repeat([]byte("x"), 1<<20)
	left := maps.Clone(want)
	deadline := time.Now().Add(10 * time.Minute)
	for len(left) > 0 && time.Now().Before(deadline) {
		for id := range left {
			if got, err := c.readStale(f, id); err == nil && bytes.Equal(got, wantOut) {
				delete(left, id)
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	readable := time.Since(t0)
	fs := c.raftStats(f)
	log, _ := os.ReadFile(f.logPath)
	installs := strings.Count(strings.ToLower(string(log)), "installed remote snapshot")
	report("%s: %s applied_index %d reached in %s, healthy %s, %d/%d sampled outputs read back equal from it after %s",
		what, f.spec.NodeID, target, caught.Round(time.Millisecond), healthy.Round(time.Millisecond),
		len(want)-len(left), len(want), readable.Round(time.Millisecond))
	report("%s: %s last_snapshot_index %s; 'installed remote snapshot' in its log (all its runs): %d",
		what, f.spec.NodeID, fs["last_snapshot_index"], installs)
	reportMem(c, what)
	for id := range left {
		got, err := c.readStale(f, id)
		t.Errorf("%s: call %s read back from %s: %d bytes, err %v", what, id, f.spec.NodeID, len(got), err)
	}
}
