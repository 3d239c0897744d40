package server

import (
	"context"
	"reflect"
	"sort"
	"sync"
	"time"

	memdb "github.com/hashicorp/go-memdb"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/hyperfunc/hyperfunc/executor"
	"github.com/hyperfunc/hyperfunc/fsm"
)

// warmer is an executor that keeps pre-started, single-use sandboxes
// (localexec). The leader sets the pools; the executor boots, refills,
// and hands each sandbox one call at most.
type warmer interface {
	// SetWarm sets the pools to keep (the whole desired state): others are
	// drained. The first call of a leadership also takes over or removes
	// the sandboxes an earlier leader left.
	SetWarm(targets []executor.WarmTarget)
	// DropWarm forgets the pools without removing anything: the next
	// leader takes the sandboxes over.
	DropWarm()
	// Warm reports hits, misses and ready sandboxes per function.
	Warm() executor.WarmStats
	// ObserveStarts reports each started call's path and start time.
	ObserveStarts(func(warm bool, d time.Duration))
}

// Defaults of the warm policy (Config.Warm*).
const (
	DefaultWarmUserCap  = 8
	DefaultWarmAgentCap = 16
	DefaultWarmIdleTTL  = 10 * time.Minute
)

// warmState is the leader's memory for the adaptive mode: when each
// function was last called. Lost on a leader change, which only means an
// adaptive pool starts at the next call.
type warmState struct {
	mu       sync.Mutex
	lastCall map[string]time.Time
	kick     chan struct{}
}

func newWarmState() *warmState {
	return &warmState{lastCall: map[string]time.Time{}, kick: make(chan struct{}, 1)}
}

// noteCall records a call of fnID (adaptive mode) and wakes the warm loop
// when the function had no recent call (its pool may start now).
func (w *warmState) noteCall(fnID string, at time.Time, ttl time.Duration) {
	w.mu.Lock()
	last, ok := w.lastCall[fnID]
	w.lastCall[fnID] = at
	w.mu.Unlock()
	if !ok || at.Sub(last) > ttl {
		select {
		case w.kick <- struct{}{}:
		default:
		}
	}
}

// recent lists the functions called within ttl of now, and forgets older ones.
func (w *warmState) recent(now time.Time, ttl time.Duration) map[string]bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := map[string]bool{}
	for id, t := range w.lastCall {
		if now.Sub(t) <= ttl {
			out[id] = true
		} else {
			delete(w.lastCall, id)
		}
	}
	return out
}

// warmPolicy is the agent's bounds on pools (Config.Warm*), normalized:
// caps >= 0.
type warmPolicy struct {
	userCap, agentCap int
	idleTTL           time.Duration
	adaptive          bool
}

func (c *Config) warmPolicy() warmPolicy {
	p := warmPolicy{userCap: c.WarmUserCap, agentCap: c.WarmAgentCap, idleTTL: c.WarmIdleTTL, adaptive: c.WarmAdaptive}
	p.userCap = max(p.userCap, 0)
	p.agentCap = max(p.agentCap, 0)
	return p
}

// warmTargets is how many sandboxes each function gets: its Warm (or 1 in
// adaptive mode when it was called within the idle TTL), within the
// per-user and the per-agent caps. Functions are served in ID order, so
// the same state always gives the same pools.
func warmTargets(fns []*fsm.Function, recent map[string]bool, p warmPolicy) []warmWant {
	sort.Slice(fns, func(i, j int) bool { return fns[i].ID < fns[j].ID })
	perUser := map[string]int{}
	total := 0
	var out []warmWant
	for _, f := range fns {
		n := f.Warm
		if n == 0 && p.adaptive && recent[f.ID] {
			n = 1
		}
		n = min(n, p.userCap-perUser[f.Owner], p.agentCap-total)
		if n <= 0 {
			continue
		}
		perUser[f.Owner] += n
		total += n
		out = append(out, warmWant{fn: f, n: n})
	}
	return out
}

type warmWant struct {
	fn *fsm.Function
	n  int
}

// runWarm keeps the executor's pools in line with the state while this
// server leads: at every change of the functions table, at a call of a
// function without a recent one (adaptive), and every idle TTL / 4.
// When leadership ends the pools are dropped, not removed: the next leader
// takes them over.
func (s *Server) runWarm(ctx context.Context) {
	w, ok := s.exec.(warmer)
	if !ok {
		return
	}
	defer w.DropWarm()
	p := s.cfg.warmPolicy()
	var last []executor.WarmTarget
	first := true
	for ctx.Err() == nil {
		ws := memdb.NewWatchSet()
		fns, err := s.store.Functions(ws, "")
		if err != nil {
			s.log.Warn("warm pools: reading functions", "error", err)
			sleepCtx(ctx, time.Second)
			continue
		}
		var targets []executor.WarmTarget
		for _, want := range warmTargets(fns, s.warm.recent(time.Now(), p.idleTTL), p) {
			targets = append(targets, executor.WarmTarget{Function: s.execFunction(want.fn), N: want.n, StdoutLimit: s.cfg.StdoutLimit})
		}
		if first || !reflect.DeepEqual(targets, last) {
			w.SetWarm(targets)
			last, first = targets, false
		}
		tick := max(p.idleTTL/4, time.Second)
		tctx, cancel := context.WithTimeout(ctx, tick)
		ws.Add(s.warm.kick)
		_ = ws.WatchCtx(tctx)
		cancel()
	}
}

// warmCollector exports the executor's warm pool counters.
type warmCollector struct {
	w                   warmer
	hits, misses, ready *prometheus.Desc
}

func newWarmCollector(w warmer) *warmCollector {
	return &warmCollector{
		w:      w,
		hits:   prometheus.NewDesc("hyperfunc_warm_hits_total", "Calls of a function with a warm pool that took a pre-started sandbox.", nil, nil),
		misses: prometheus.NewDesc("hyperfunc_warm_misses_total", "Calls of a function with a warm pool that found no sandbox ready and started cold.", nil, nil),
		ready:  prometheus.NewDesc("hyperfunc_warm_ready", "Pre-started sandboxes ready for a call, per function.", []string{"function"}, nil),
	}
}

func (c *warmCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.hits
	ch <- c.misses
	ch <- c.ready
}

func (c *warmCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.w.Warm()
	ch <- prometheus.MustNewConstMetric(c.hits, prometheus.CounterValue, float64(st.Hits))
	ch <- prometheus.MustNewConstMetric(c.misses, prometheus.CounterValue, float64(st.Misses))
	for fn, n := range st.Ready {
		ch <- prometheus.MustNewConstMetric(c.ready, prometheus.GaugeValue, float64(n), fn)
	}
}

// registerWarmMetrics adds the warm pool metrics and the start-time
// histogram (by path: warm or cold) when the executor keeps pools.
func (m *metrics) registerWarmMetrics(exec Executor) {
	w, ok := exec.(warmer)
	if !ok {
		return
	}
	startTime := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "hyperfunc", Name: "call_exec_start_seconds",
		Help:    "Time the executor took from a call's Start to its command handed over, by path (warm: a pre-started sandbox; cold: a new container).",
		Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
	}, []string{"path"})
	m.reg.MustRegister(newWarmCollector(w), startTime)
	w.ObserveStarts(func(warm bool, d time.Duration) {
		path := "cold"
		if warm {
			path = "warm"
		}
		startTime.WithLabelValues(path).Observe(d.Seconds())
	})
}
