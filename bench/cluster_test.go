package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/hyperfunc/hyperfunc/api"
	"github.com/hyperfunc/hyperfunc/executor"
	"github.com/hyperfunc/hyperfunc/server"
)

// fakeExec is the trivial executor of the cluster benchmarks: every call
// finishes at once with empty stdout (N bytes for a command `output N`), so
// the dispatcher's Raft traffic (start, running, finish) is part of the
// load but no container runs. Unlike servertest's Engine it keeps nothing
// of a call once its event is sent, so it adds nothing to a memory reading.
type fakeExec struct {
	events chan executor.Event
	// async sends the event after Start returned, as a real engine's end
	// comes after its start (the memory benchmark's agents).
	async bool
}

var _ server.Executor = (*fakeExec)(nil)

func newFakeExec() *fakeExec { return &fakeExec{events: make(chan executor.Event, 1<<16)} }

func (f *fakeExec) Name() string                                        { return "bench-fake" }
func (f *fakeExec) Register(context.Context, executor.Function) error   { return nil }
func (f *fakeExec) Deregister(context.Context, executor.Function) error { return nil }
func (f *fakeExec) Events() <-chan executor.Event                       { return f.events }
func (f *fakeExec) Cancel(context.Context, executor.Handle) error       { return nil }
func (f *fakeExec) Pull(context.Context, string) error                  { return nil }
func (f *fakeExec) Health(context.Context) error                        { return nil }

func (f *fakeExec) Start(ctx context.Context, s executor.Spec) (executor.Handle, error) {
	now := time.Now().UTC()
	ev := executor.Event{CallID: s.CallID, Kind: executor.Finished, Ref: "fake-" + s.CallID, StartedAt: now, EndedAt: now}
	if c := s.Function.Command; len(c) == 2 && c[0] == "output" {
		n, _ := strconv.Atoi(c[1])
		ev.Stdout = bytes.Repeat([]byte("x"), n)
		ev.Ref = fmt.Sprintf("fake-output-%d-%s", n, s.CallID)
	}
	if f.async {
		go func() { f.events <- ev }()
		return executor.Handle{CallID: s.CallID, Ref: ev.Ref}, nil
	}
	select {
	case f.events <- ev:
	case <-ctx.Done():
		return executor.Handle{}, ctx.Err()
	}
	return executor.Handle{CallID: s.CallID, Ref: ev.Ref}, nil
}

func (f *fakeExec) Reconcile(_ context.Context, hs []executor.Handle) ([]executor.Event, error) {
	out := make([]executor.Event, len(hs))
	for i, h := range hs {
		out[i] = executor.Event{CallID: h.CallID, Kind: executor.NotFound}
		// Every call ends at once, so one the last leader started has
		// ended: say so. (NotFound for a RUNNING call leaves it RUNNING
		// forever: CallRequeue only takes STARTING calls back.)
		var n int
		if _, err := fmt.Sscanf(h.Ref, "fake-output-%d-", &n); err == nil {
			now := time.Now().UTC()
			out[i] = executor.Event{CallID: h.CallID, Kind: executor.Finished, Ref: h.Ref,
				Stdout: bytes.Repeat([]byte("x"), n), StartedAt: now, EndedAt: now}
		}
	}
	return out, nil
}

// benchLogger keeps the benchmark output parseable: agent logs are dropped
// unless HF_BENCH_LOG is set.
func benchLogger(name string) hclog.Logger {
	var out io.Writer = io.Discard
	level := hclog.Error
	if os.Getenv("HF_BENCH_LOG") != "" {
		out, level = os.Stderr, hclog.Info
	}
	return hclog.New(&hclog.LoggerOptions{Name: name, Level: level, Output: out})
}

// cluster is n in-process agents on loopback: real Raft over TCP, BoltDB
// log stores and file snapshots in data dirs on disk, HTTP on 127.0.0.1:0.
type cluster struct {
	servers []*server.Server
}

// startCluster starts the first server alone (it bootstraps itself), then
// the others with -join pointing at it, and waits until every server
// knows the leader's HTTP address (forwarding works).
func startCluster(tb testing.TB, n int, newExec func() server.Executor, tune func(*server.Config)) *cluster {
	tb.Helper()
	c := &cluster{}
	tb.Cleanup(c.shutdown)
	var join []string
	for i := 0; i < n; i++ {
		cfg := server.Config{
			DataDir:         tb.TempDir(),
			HTTPAddr:        "127.0.0.1:0",
			RaftAddr:        "127.0.0.1:0",
			BootstrapExpect: 1,
			Join:            join,
			ClusterKey:      "bench-cluster-key",
			Executor:        newExec(),
			Logger:          benchLogger(fmt.Sprintf("node%d", i)),
		}
		if i > 0 {
			cfg.BootstrapExpect = n
		}
		if tune != nil {
			tune(&cfg)
		}
		s, err := server.New(cfg)
		if err != nil {
			tb.Fatal(err)
		}
		if err := s.Start(); err != nil {
			tb.Fatal(err)
		}
		c.servers = append(c.servers, s)
		if i == 0 {
			join = []string{s.HTTPAddr()}
			waitFor(tb, 30*time.Second, "first server leads", func() bool { return s.IsLeader() })
		}
	}
	waitFor(tb, 60*time.Second, fmt.Sprintf("%d voters, a leader known everywhere", n), func() bool {
		l := c.leader()
		if l == nil {
			return false
		}
		cf := l.Raft().GetConfiguration()
		if cf.Error() != nil || len(cf.Configuration().Servers) != n {
			return false
		}
		for _, s := range c.servers {
			ms, err := l.Store().Members(nil)
			if err != nil || len(ms) < n {
				return false
			}
			if _, id := s.Raft().LeaderWithID(); string(id) != l.NodeID() {
				return false
			}
			// The follower's replica must hold the leader's member record
			// for forwarding.
			if ms, _ := s.Store().Members(nil); len(ms) < n {
				return false
			}
		}
		return true
	})
	return c
}

func (c *cluster) leader() *server.Server {
	for _, s := range c.servers {
		if s.IsLeader() {
			return s
		}
	}
	return nil
}

func (c *cluster) shutdown() {
	var wg sync.WaitGroup
	for _, s := range c.servers {
		wg.Add(1)
		go func() { defer wg.Done(); _ = s.Shutdown(false) }()
	}
	wg.Wait()
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(tb testing.TB, d time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %s waiting for: %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// httpClient is a keep-alive client with an idle connection per worker.
func httpClient(conns int) *http.Client {
	return &http.Client{Transport: &http.Transport{
		Proxy:               nil,
		MaxIdleConns:        conns * 4,
		MaxIdleConnsPerHost: conns,
		IdleConnTimeout:     90 * time.Second,
	}}
}

func apiClient(tb testing.TB, addr string, hc *http.Client) *api.Client {
	tb.Helper()
	c, err := api.NewClient(&api.Config{Address: addr, HTTPClient: hc})
	if err != nil {
		tb.Fatal(err)
	}
	return c
}
