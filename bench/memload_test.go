package bench

import (
	"bytes"
	"context"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func numCPU() int { return runtime.NumCPU() }

func loadAvg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	return strings.Join(strings.Fields(string(b))[:min(3, len(strings.Fields(string(b))))], " ")
}

// leaderWatch polls every node's Raft state: a node that was Leader and is
// not any more is a step-down, a new term an election.
type leaderWatch struct {
	stepDowns, elections atomic.Int64
	stop                 chan struct{}
	done                 sync.WaitGroup
}

func watchLeaders(c *procCluster) *leaderWatch {
	w := &leaderWatch{stop: make(chan struct{})}
	w.done.Add(1)
	go func() {
		defer w.done.Done()
		was := map[string]string{}
		var term uint64
		for {
			select {
			case <-w.stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
			for _, nd := range c.nodes {
				st := c.raftStats(nd)
				if st == nil {
					continue
				}
				if was[nd.spec.NodeID] == "Leader" && st["state"] != "Leader" {
					w.stepDowns.Add(1)
				}
				was[nd.spec.NodeID] = st["state"]
				if tm := statUint(st, "term"); tm > term {
					if term != 0 {
						w.elections.Add(int64(tm - term))
					}
					term = tm
				}
			}
		}
	}()
	return w
}

func (w *leaderWatch) end() { close(w.stop); w.done.Wait() }

// smallLoop makes small async calls on the leader one after the other for
// d and returns the accept latencies, sorted.
// loadRounds is how many quiet and busy windows memLoad alternates.
const loadRounds = 6

func smallLoop(t *testing.T, c *procCluster, d time.Duration) []time.Duration {
	cl := c.waitLeader().client
	var lats []time.Duration
	for end := time.Now().Add(d); time.Now().Before(end); {
		t0 := time.Now()
		if _, err := cl.Calls().Call(context.Background(), "tiny", strings.NewReader("hi"), nil); err != nil {
			t.Fatalf("small call: %v", err)
		}
		lats = append(lats, time.Since(t0))
	}
	slices.Sort(lats)
	return lats
}

// memLoad: 8 clients send 1 MiB stdin async calls while one client makes
// small calls; the small calls' accept latency against the same loop
// alone, and the leader changes meanwhile. The quiet and busy windows
// alternate (loadRounds of d/3/loadRounds quiet, d/loadRounds busy), so a
// neighbour's load on the machine weighs on both sides of the ratio
// alike, not on whichever window it happened to fall in.
func memLoad(t *testing.T, c *procCluster, d time.Duration) {
	createFunction(t, c, "tiny", "output", "0")
	createFunction(t, c, "heavy", "output", "0")
	w := watchLeaders(c)
	var sent, refused atomic.Int64
	var refusals sync.Map // error text -> count
	stdin := bytes.Repeat([]byte("s"), 1<<20)
	heavy := func() (stop func()) {
		done := make(chan struct{})
		var wg sync.WaitGroup
		for i := 0; i < 8; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				cl := c.nodes[i%len(c.nodes)].client
				for {
					select {
					case <-done:
						return
					default:
					}
					if _, err := cl.Calls().Call(context.Background(), "heavy", bytes.NewReader(stdin), nil); err != nil {
						refused.Add(1)
						msg := err.Error()
						v, _ := refusals.LoadOrStore(msg[:min(80, len(msg))], new(atomic.Int64))
						v.(*atomic.Int64).Add(1)
						continue
					}
					sent.Add(1)
				}
			}()
		}
		return func() { close(done); wg.Wait() }
	}
	snapshots := func() (n float64) {
		for _, nd := range c.nodes {
			n += metricSum(c.metrics(nd), "hyperfunc_raft_size_snapshots_total")
		}
		return n
	}
	snaps0 := snapshots()
	var quiet, busy []time.Duration
	var busyFor time.Duration
	for range loadRounds {
		quiet = append(quiet, smallLoop(t, c, d/3/loadRounds)...)
		stop := heavy()
		t0 := time.Now()
		time.Sleep(2 * time.Second) // the 1 MiB stream is under way
		busy = append(busy, smallLoop(t, c, d/loadRounds)...)
		stop()
		busyFor += time.Since(t0)
	}
	w.end()
	slices.Sort(quiet)
	slices.Sort(busy)
	p := func(l []time.Duration, q int) float64 { return ms(percentile(l, q)) }
	report("load: small calls alone (%s in %d windows): n=%d p50 %.1f ms p99 %.1f ms", d/3, loadRounds, len(quiet), p(quiet, 50), p(quiet, 99))
	report("load: small calls beside 8x1MiB clients (%s in %d windows, between those): n=%d p50 %.1f ms p99 %.1f ms; p99 ratio %.2f (target <= 3)",
		d, loadRounds, len(busy), p(busy, 50), p(busy, 99), p(busy, 99)/p(quiet, 99))
	report("load: 1 MiB calls accepted %d (%.1f MiB/s), refused %d; step-downs %d, elections %d (target 0); size-triggered snapshots on the 3 nodes: %.0f",
		sent.Load(), float64(sent.Load())/busyFor.Seconds(), refused.Load(), w.stepDowns.Load(), w.elections.Load(), snapshots()-snaps0)
	refusals.Range(func(k, v any) bool {
		report("load: refusal %q x%d", k, v.(*atomic.Int64).Load())
		return true
	})
	reportMem(c, "after 1MiB-stdin load")
}
