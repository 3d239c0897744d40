package chaos

import (
	"context"
	"flag"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hyperfunc/hyperfunc/api"
)

var (
	duration = flag.Duration("chaos.duration", 40*time.Second, "how long load and faults run (make chaos DURATION=10m)")
	seedFlag = flag.Uint64("chaos.seed", 0, "seed of the fault schedule and the load (0: from the clock; printed)")
	clients  = flag.Int("chaos.clients", 16, "concurrent clients")
	rate     = flag.Float64("chaos.rate", 20, "call submissions per second, all clients together")
	strict   = flag.Bool("chaos.strict", true, "fail on the known, documented issues too (the issues it tolerated are fixed; -chaos.strict=false tolerates them)")
	keepLogs = flag.Bool("chaos.keep", false, "keep the agents' logs and data dirs even when the run passes")
)

func TestMain(m *testing.M) {
	flag.Parse()
	code := m.Run()
	if built != nil {
		os.RemoveAll(built.dir)
	}
	os.Exit(code)
}

const function = "cat"

// TestChaos runs three real servers on the Nomad double under load while a
// seeded schedule injects faults, then checks that nothing was lost, run
// twice or changed, that the replicas converged, and that the call states
// clients saw are linearizable.
func TestChaos(t *testing.T) {
	if testing.Short() {
		t.Skip("chaos run: skipped with -short")
	}
	seed := *seedFlag
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	*rate = loadRate()
	t.Logf("chaos: seed %d (rerun with -chaos.seed=%d), duration %s, %d clients, %.0f calls/s", seed, seed, *duration, *clients, *rate)
	began := time.Now()
	dir, err := os.MkdirTemp("", "hyperfunc-chaos-")
	if err != nil {
		t.Fatal(err)
	}
	var c *cluster
	t.Cleanup(func() {
		if t.Failed() || *keepLogs {
			if t.Failed() && c != nil {
				var tails strings.Builder
				for _, n := range c.nodes {
					tails.WriteString(n.logTail(40))
				}
				t.Logf("last lines of the agents' logs:\n%s", tails.String())
			}
			t.Logf("agents' logs and data kept in %s (seed %d)", dir, seed)
			return
		}
		os.RemoveAll(dir)
	})
	logf := func(format string, args ...any) {
		t.Logf("%7.1fs "+format, append([]any{time.Since(began).Seconds()}, args...)...)
	}

	b := buildBins(t)
	c = newCluster(t, b, dir, seed, logf)
	if err := c.waitStable(90 * time.Second); err != nil {
		t.Fatalf("the cluster did not form: %v", err)
	}
	// Two minutes only catch a hang: the cluster just formed on a machine
	// that may be busy, and each try is bounded by the client's 10 s.
	err = poll(2*time.Minute, 500*time.Millisecond, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err := c.nodes[0].Client().Functions().Create(ctx, &api.FunctionSpec{Name: function, Image: chaosImage(), Command: []string{"cat"}})
		if api.StatusCode(err) == 409 {
			return nil // an earlier attempt got through
		}
		return err
	})
	if err != nil {
		t.Fatalf("creating the function: %v", err)
	}
	logf("cluster up: %s", c.describe())

	h := newHistory()
	st := &loadStats{}
	cfg := loadConfig{
		clients: *clients, rate: *rate, function: function, seed: seed,
		maxCalls: int(*rate*duration.Seconds()) + 100,
	}
	nm := &nemesis{c: c, h: h, logf: logf}
	ctx, cancel := context.WithTimeout(context.Background(), *duration)
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); runLoad(ctx, c, h, cfg, st) }()
	progressDone := make(chan struct{})
	go func() {
		tk := time.NewTicker(30 * time.Second)
		defer tk.Stop()
		for {
			select {
			case <-progressDone:
				return
			case <-tk.C:
				logf("load: %d submitted, %d acknowledged, %d unknown, %d refused, %d reads (%d unanswered); faults %s",
					st.submitted.Load(), st.acked.Load(), st.unknown.Load(), st.refused.Load(), st.reads.Load(), st.readErrors.Load(), formatCounts(nm.counts()))
			}
		}
	}()
	nemErr := nm.run(ctx)
	cancel()
	wg.Wait()
	close(progressDone)
	loadEnd := time.Since(began)
	nm.healAll()
	if nemErr != nil {
		t.Fatalf("%v\nfaults so far:\n  %s", nemErr, strings.Join(nm.lines(), "\n  "))
	}
	if err := c.waitStable(stableTimeout); err != nil {
		t.Fatalf("the cluster was not stable after healing every fault: %v", err)
	}
	logf("load stopped and faults healed: %d submitted, %d acknowledged, %d unknown, %d refused; checking", st.submitted.Load(), st.acked.Load(), st.unknown.Load(), st.refused.Load())

	rep := check(context.Background(), c, h, function, 3*time.Minute)

	var sum strings.Builder
	fmt.Fprintf(&sum, "chaos summary (seed %d)\n", seed)
	fmt.Fprintf(&sum, "  load:    %s of load and faults, %d clients at %.0f calls/s: %d calls submitted, %d acknowledged, %d unknown (%d of them exist), %d refused %v\n",
		loadEnd.Round(time.Second), *clients, *rate, st.submitted.Load(), rep.acked, rep.unknown, rep.unknownExist, st.refused.Load(), h.refused)
	fmt.Fprintf(&sum, "  calls:   %d in the cluster: %d FINISHED, %d FAILED, %d other; %d executions on the executor; %d ran unacknowledged\n", rep.listed, rep.finished, rep.failed, rep.other, rep.executions, len(rep.ranUnacked))
	fmt.Fprintf(&sum, "  faults:  %d: %s\n", len(nm.lines()), formatCounts(nm.counts()))
	fmt.Fprintf(&sum, "  network: %d connections refused by cuts, %d not attributed to a server\n", c.net.refused.Load(), c.net.unattributed.Load())
	fmt.Fprintf(&sum, "  reads:   %d consistent reads checked (%d unanswered, left out), linearizable: %s\n", rep.reads, st.readErrors.Load(), rep.linearizable)
	fmt.Fprintf(&sum, "  state:   replicas agree at latest index %d (applied %d), hash %.16s\n", rep.stateLatest, rep.stateIndex, rep.stateHash)
	fmt.Fprintf(&sum, "  time:    %s\n", time.Since(began).Round(time.Second))
	for _, e := range topErrors(h.unknown, 5) {
		fmt.Fprintf(&sum, "  unknown: %s\n", e)
	}
	for _, g := range nm.gaps {
		fmt.Fprintf(&sum, "  gap:     %s\n", g)
	}
	fmt.Fprintf(&sum, "  fault log:\n    %s\n", strings.Join(nm.lines(), "\n    "))
	t.Log(sum.String())
	for i, u := range rep.ranUnacked {
		if i == 10 {
			t.Logf("RAN UNACKNOWLEDGED: ... and %d more", len(rep.ranUnacked)-i)
			break
		}
		t.Logf("RAN UNACKNOWLEDGED (the client's answer was lost; a retry would run it again): %s", u)
	}
	for _, k := range rep.known {
		t.Logf("KNOWN ISSUE (see docs/RELIABILITY.md; fails with -chaos.strict): %s", k)
	}
	if *strict && len(rep.known) > 0 {
		t.Errorf("%d violations of known issues (seed %d, -chaos.strict)", len(rep.known), seed)
	}
	if len(rep.violations) > 0 {
		shown := rep.violations
		if len(shown) > 40 {
			shown = append(shown[:40:40], fmt.Sprintf("... and %d more", len(rep.violations)-40))
		}
		t.Errorf("%d violations (seed %d):\n  %s", len(rep.violations), seed, strings.Join(shown, "\n  "))
	}
}

func (nm *nemesis) lines() []string {
	nm.mu.Lock()
	defer nm.mu.Unlock()
	out := make([]string, len(nm.log))
	for i, f := range nm.log {
		out[i] = f.String()
	}
	return out
}

func (c *cluster) describe() string {
	var parts []string
	for _, n := range c.nodes {
		parts = append(parts, fmt.Sprintf("%s http %s (proxy %s) raft %s (proxy %s)", n.name, n.realHTTP(), n.httpProxy.Addr(), n.realRaft(), n.raftProxy.Addr()))
	}
	return strings.Join(parts, "; ") + "; nomad " + c.double.nomad + "; public " + c.lb.Addr()
}

// topErrors groups the errors of unknown submissions (digits masked) and
// returns the most frequent ones with their counts.
func topErrors(us []unknownRec, n int) []string {
	count := map[string]int{}
	for _, u := range us {
		key := strings.Map(func(r rune) rune {
			if r >= '0' && r <= '9' {
				return '#'
			}
			return r
		}, u.err)
		if len(key) > 160 {
			key = key[:160]
		}
		count[key]++
	}
	keys := make([]string, 0, len(count))
	for k := range count {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return count[keys[i]] > count[keys[j]] })
	var out []string
	for i, k := range keys {
		if i == n {
			break
		}
		out = append(out, fmt.Sprintf("%dx %s", count[k], k))
	}
	return out
}
