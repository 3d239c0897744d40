package nomadjob_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/hyperfunc/hyperfunc/executor"
	"github.com/hyperfunc/hyperfunc/nomadjob"
	"github.com/hyperfunc/hyperfunc/nomadjob/nomadtest"
)

type env struct {
	t   *testing.T
	srv *nomadtest.Server
	fe  *nomadtest.Frontend
	ex  *nomadjob.Executor
	col *collector
	// markers counts the marker calls run so far.
	markers int
}

func newEnv(t *testing.T) *env {
	t.Helper()
	srv := nomadtest.New(t)
	srv.Heartbeat = 50 * time.Millisecond
	archive, _, err := nomadjob.ShimArchive([]byte("#!hf-shim test binary\n"))
	if err != nil {
		t.Fatal(err)
	}
	fe := nomadtest.NewFrontend(t, nomadjob.DefaultShimArtifactPath, archive)
	e := &env{t: t, srv: srv, fe: fe}
	e.ex, e.col = e.newExecutor()
	return e
}

func (e *env) config() nomadjob.Config {
	return nomadjob.Config{
		Address:          e.srv.URL,
		ArtifactBaseURL:  e.fe.URL,
		ShimSHA256:       e.fe.ShimSHA256,
		StreamBackoffMin: 10 * time.Millisecond,
		StreamBackoffMax: 100 * time.Millisecond,
		RecheckInterval:  time.Hour, // tests prove the stream and reconnect paths
		CollectTimeout:   5 * time.Second,
	}
}

// newExecutor starts another executor on the same double (a second leader).
func (e *env) newExecutor() (*nomadjob.Executor, *collector) {
	e.t.Helper()
	return e.startExecutor(e.config())
}

// startExecutor starts an executor with cfg and collects its events; both
// stop when the test ends.
func (e *env) startExecutor(cfg nomadjob.Config) (*nomadjob.Executor, *collector) {
	e.t.Helper()
	ex, err := nomadjob.New(cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	col := newCollector(ex.Events())
	e.t.Cleanup(func() { _ = ex.Close(); col.stop() })
	return ex, col
}

func fn(name string, command ...string) executor.Function {
	return executor.Function{
		ID: "alice/" + name, Owner: "alice", Name: name, Image: "busybox:1.36",
		Command: command, CPU: 100, MemoryMB: 64,
	}
}

func (e *env) register(f executor.Function) {
	e.t.Helper()
	if err := e.ex.Register(ctx(e.t), f); err != nil {
		e.t.Fatalf("register %s: %v", f.ID, err)
	}
}

func spec(callID string, f executor.Function, stdin string) executor.Spec {
	return executor.Spec{
		CallID: callID, Function: f, Stdin: []byte(stdin), StdoutLimit: 1 << 20, Key: "k-" + callID,
		Env: map[string]string{"HYPER_CALL_ID": callID, "HYPER_FUNC_NAME": f.Name},
	}
}

// run registers f, starts one call and waits for its final event.
func (e *env) run(f executor.Function, s executor.Spec) executor.Event {
	e.t.Helper()
	e.register(f)
	if _, err := e.ex.Start(ctx(e.t), s); err != nil {
		e.t.Fatalf("start %s: %v", s.CallID, err)
	}
	return e.col.final(e.t, s.CallID)
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), hang)
	t.Cleanup(cancel)
	return c
}

// collector records the events of an executor.
type collector struct {
	mu   sync.Mutex
	evs  map[string][]executor.Event
	done chan struct{}
	wg   sync.WaitGroup
}

func newCollector(ch <-chan executor.Event) *collector {
	c := &collector{evs: map[string][]executor.Event{}, done: make(chan struct{})}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		for {
			select {
			case ev := <-ch:
				c.mu.Lock()
				c.evs[ev.CallID] = append(c.evs[ev.CallID], ev)
				c.mu.Unlock()
			case <-c.done:
				return
			}
		}
	}()
	return c
}

func (c *collector) stop() {
	select {
	case <-c.done:
	default:
		close(c.done)
	}
	c.wg.Wait()
}

func (c *collector) events(callID string) []executor.Event {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]executor.Event(nil), c.evs[callID]...)
}

func isFinal(k executor.Kind) bool { return k == executor.Finished || k == executor.Failed }

// final waits (polling, with a deadline) for the call's final event.
func (c *collector) final(t *testing.T, callID string) executor.Event {
	t.Helper()
	return c.finalWithin(t, hang, callID)
}

// finalWithin is final with the deadline d.
func (c *collector) finalWithin(t *testing.T, d time.Duration, callID string) executor.Event {
	t.Helper()
	var ev executor.Event
	waitFor(t, d, "final event of "+callID, func() bool {
		for _, e := range c.events(callID) {
			if isFinal(e.Kind) {
				ev = e
				return true
			}
		}
		return false
	})
	return ev
}

// finals counts the final events of a call.
func (c *collector) finals(callID string) int {
	n := 0
	for _, e := range c.events(callID) {
		if isFinal(e.Kind) {
			n++
		}
	}
	return n
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// marker runs one more call on ex to its end: an ordering point instead of
// a sleep before a check that some event did not come. Events leave an
// executor through one channel, in order, so anything ex emitted before
// the marker's end is in col by then.
func (e *env) marker(ex *nomadjob.Executor, col *collector) {
	e.t.Helper()
	e.markers++
	f := fn("marker", "echo", "m")
	if err := ex.Register(ctx(e.t), f); err != nil {
		e.t.Fatalf("register marker: %v", err)
	}
	s := spec(fmt.Sprintf("c-marker-%d", e.markers), f, "")
	if _, err := ex.Start(ctx(e.t), s); err != nil {
		e.t.Fatalf("start marker: %v", err)
	}
	col.final(e.t, s.CallID)
}

// interpose starts a reverse proxy in front of upstream (the double, a
// real agent, a frontend) for the test's faults: hook sees each request
// first and returns true when it answered it itself. Responses are flushed
// at once (the event stream); the proxy closes with the test.
func interpose(t *testing.T, upstream string, hook func(w http.ResponseWriter, r *http.Request) bool) *httptest.Server {
	t.Helper()
	u, err := url.Parse(upstream)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(u)
	proxy.FlushInterval = -1
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !hook(w, r) {
			proxy.ServeHTTP(w, r)
		}
	}))
	t.Cleanup(func() { srv.CloseClientConnections(); srv.Close() })
	return srv
}
