package server

import (
	"net/http"
	"path/filepath"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/hyperfunc/hyperfunc/fsm"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics live in a registry of their own per server, so that several
// servers in one test process do not collide.
type metrics struct {
	s              *Server
	reg            *prometheus.Registry
	requests       *prometheus.CounterVec
	enqueued       prometheus.Counter
	finished       prometheus.Counter
	forwarded      prometheus.Counter
	batched        prometheus.Counter
	executorErrors prometheus.Counter
	executorUp     prometheus.Gauge
	isLeader       prometheus.Gauge
	pending        prometheus.Gauge
	running        prometheus.Gauge
	raftIndex      prometheus.Gauge
	sizeSnapshots  prometheus.Counter
	calls          *callMetrics
	raftLogBytes   prometheus.Gauge
	stateBytes     prometheus.Gauge
	largestEntry   prometheus.GaugeFunc
}

func newMetrics(s *Server) *metrics {
	m := &metrics{s: s, reg: prometheus.NewRegistry()}
	f := func(name, help string) prometheus.Opts {
		return prometheus.Opts{Namespace: "hyperfunc", Name: name, Help: help}
	}
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts(f("http_requests_total", "HTTP requests by route and status.")), []string{"method", "route", "code"})
	m.enqueued = prometheus.NewCounter(prometheus.CounterOpts(f("calls_enqueued_total", "Calls queued through this server.")))
	m.finished = prometheus.NewCounter(prometheus.CounterOpts(f("calls_finished_total", "Calls this server recorded as ended while leading.")))
	m.forwarded = prometheus.NewCounter(prometheus.CounterOpts(f("requests_forwarded_total", "Requests proxied to the leader.")))
	m.batched = prometheus.NewCounter(prometheus.CounterOpts(f("calls_forwarded_batched_total", "Async calls a follower sent to the leader in batches.")))
	m.executorErrors = prometheus.NewCounter(prometheus.CounterOpts(f("executor_unavailable_total", "Starts refused because the executor was unavailable.")))
	m.executorUp = prometheus.NewGauge(prometheus.GaugeOpts(f("executor_up", "1 when the executor answered its last health check.")))
	m.isLeader = prometheus.NewGauge(prometheus.GaugeOpts(f("raft_leader", "1 while this server leads.")))
	m.pending = prometheus.NewGauge(prometheus.GaugeOpts(f("calls_pending", "Queued calls in the cluster.")))
	m.running = prometheus.NewGauge(prometheus.GaugeOpts(f("calls_running", "Started calls in the cluster.")))
	m.raftIndex = prometheus.NewGauge(prometheus.GaugeOpts(f("raft_applied_index", "Last Raft index applied here.")))
	m.sizeSnapshots = prometheus.NewCounter(prometheus.CounterOpts(f("raft_size_snapshots_total", "Snapshots taken because the Raft log grew past its byte budget.")))
	m.calls = newCallMetrics()
	m.raftLogBytes = prometheus.NewGauge(prometheus.GaugeOpts(f("raft_log_bytes", "Size of this server's Raft log on disk (raft-wal segments and meta), in bytes.")))
	m.stateBytes = prometheus.NewGauge(prometheus.GaugeOpts(f("state_disk_bytes", "Size of the state's disk half (outputs, logs, ended calls) on this server; the Go heap is go_memstats_heap_inuse_bytes.")))
	m.largestEntry = prometheus.NewGaugeFunc(prometheus.GaugeOpts(f("raft_entry_max_bytes", "The largest Raft entry this server applied since it started (fsm.MaxEntryPayload bounds the payload of one).")),
		func() float64 { return float64(s.sized.largest.Load()) })
	heldStdin := prometheus.NewGaugeFunc(prometheus.GaugeOpts(f("state_held_stdin_bytes", "Stdin of unended calls this server keeps in memory rather than in the state's disk half, in bytes (bounded by cachestore.DefaultHeldStdinMax).")),
		func() float64 { return float64(s.store.HeldStdinBytes()) })
	m.reg.MustRegister(m.raftLogBytes, m.stateBytes, m.largestEntry, heldStdin)
	m.reg.MustRegister(m.calls.ended, m.calls.queueWait, m.calls.runTime, newStateCollector(func() *fsm.Store { return s.store }))
	m.reg.MustRegister(m.requests, m.enqueued, m.finished, m.forwarded, m.batched, m.executorErrors, m.executorUp,
		m.isLeader, m.pending, m.running, m.raftIndex, m.sizeSnapshots,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// refresh updates the gauges derived from state; called once a second.
func (m *metrics) refresh() {
	if m.s.raft == nil {
		return
	}
	if m.s.raft.State() == raft.Leader {
		m.isLeader.Set(1)
	} else {
		m.isLeader.Set(0)
	}
	m.raftIndex.Set(float64(m.s.raft.AppliedIndex()))
	m.raftLogBytes.Set(float64(logStoreBytes(filepath.Join(m.s.cfg.DataDir, raftDir))))
	m.stateBytes.Set(float64(m.s.store.DiskBytes()))
	us, err := m.s.store.OwnerUsages(nil)
	if err != nil {
		return
	}
	var p, r int
	for _, u := range us {
		p += u.Pending
		r += u.Running
	}
	m.pending.Set(float64(p))
	m.running.Set(float64(r))
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}
