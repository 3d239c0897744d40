package server

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/hyperfunc/hyperfunc/cachestore"
	"github.com/hyperfunc/hyperfunc/fsm"
)

// Per-function and per-user metrics. Two kinds, for two reasons:
//   - what happened to calls (ended by state and reason, queue wait, run
//     time) is observed by the leader as it records each end: summed over
//     the servers, every call counts once, whoever led at the time;
//   - what the cluster holds now (queued and running calls per function
//     and per user, cache bytes) is read from the replicated state at each
//     scrape, so every server answers the same figures.
type callMetrics struct {
	ended     *prometheus.CounterVec
	queueWait *prometheus.HistogramVec
	runTime   *prometheus.HistogramVec
}

// Buckets in seconds: a warm call takes tens of milliseconds, a batch job
// hours.
var (
	waitBuckets = []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600}
	runBuckets  = []float64{.05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 4 * 3600, 24 * 3600}
)

func newCallMetrics() *callMetrics {
	return &callMetrics{
		ended: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "hyperfunc", Name: "calls_ended_total",
			Help: "Calls recorded as ended (on the leader of the time), by owner, function, final state and failure reason.",
		}, []string{"owner", "function", "state", "reason"}),
		queueWait: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "hyperfunc", Name: "call_queue_seconds", Buckets: waitBuckets,
			Help: "Seconds from a call's acceptance to its start, by owner and function (calls that started).",
		}, []string{"owner", "function"}),
		runTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "hyperfunc", Name: "call_run_seconds", Buckets: runBuckets,
			Help: "Seconds from a call's start to its end, by owner and function (calls that started).",
		}, []string{"owner", "function"}),
	}
}

// observe records calls whose end was just committed. The count goes
// last: a scrape that sees a call counted sees its durations too.
func (m *callMetrics) observe(calls []*fsm.Call) {
	for _, c := range calls {
		name := c.Function[len(c.Owner)+1:]
		if !c.StartedAt.IsZero() {
			m.queueWait.WithLabelValues(c.Owner, name).Observe(c.StartedAt.Sub(c.CreatedAt).Seconds())
			if !c.FinishedAt.IsZero() {
				m.runTime.WithLabelValues(c.Owner, name).Observe(c.FinishedAt.Sub(c.StartedAt).Seconds())
			}
		}
		m.ended.WithLabelValues(c.Owner, name, c.State, c.Reason).Inc()
	}
}

// stateCollector reads the gauges of the replicated state at scrape time.
type stateCollector struct {
	store      func() *fsm.Store
	fnCalls    *prometheus.Desc
	cacheBytes *prometheus.Desc
	userCalls  *prometheus.Desc
	userStdin  *prometheus.Desc
}

func newStateCollector(store func() *fsm.Store) *stateCollector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("hyperfunc_"+name, help, labels, nil)
	}
	return &stateCollector{
		store:      store,
		fnCalls:    d("function_calls", "A function's calls now queued (pending) or started (running).", "owner", "function", "state"),
		cacheBytes: d("function_cache_bytes", "Bytes in a function's output and log caches.", "owner", "function", "cache"),
		userCalls:  d("user_calls", "A user's calls now queued (pending) or started (running).", "owner", "state"),
		userStdin:  d("user_stdin_bytes", "Stdin bytes a user's unfinished calls hold (bounded by -max-queued-bytes).", "owner"),
	}
}

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.fnCalls, c.cacheBytes, c.userCalls, c.userStdin} {
		ch <- d
	}
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.store()
	g := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	fns, err := st.Functions(nil, "")
	owners := map[string]bool{}
	if err == nil {
		for _, f := range fns {
			owners[f.Owner] = true
			stats, err := st.FunctionStats(nil, f.ID)
			if err != nil {
				continue
			}
			g(c.fnCalls, float64(stats.Pending), f.Owner, f.Name, "pending")
			g(c.fnCalls, float64(stats.Running), f.Owner, f.Name, "running")
			for _, k := range []cachestore.Kind{cachestore.KindOutput, cachestore.KindLog} {
				if u, err := st.CacheUsage(k, f.ID); err == nil {
					g(c.cacheBytes, float64(u.Bytes), f.Owner, f.Name, string(k))
				}
			}
		}
	}
	// Every owner of a function, busy or not: an idle user's zeros are
	// figures too (the usage table keeps only busy owners).
	for owner := range owners {
		u, err := st.OwnerUsage(owner)
		if err != nil {
			continue
		}
		g(c.userCalls, float64(u.Pending), owner, "pending")
		g(c.userCalls, float64(u.Running), owner, "running")
		g(c.userStdin, float64(u.StdinBytes), owner)
	}
}
