package server_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/hyperfunc/hyperfunc/api"
	"github.com/hyperfunc/hyperfunc/server"
	"github.com/hyperfunc/hyperfunc/server/servertest"
)

// TestRequestsRideOutAnElection: a write sent to a follower right after
// the leader died goes through: the follower holds it while it knows no
// leader, and answers 503 with Retry-After while it still tries the dead
// one, which the client sends again.
func TestRequestsRideOutAnElection(t *testing.T) {
	c := servertest.NewCluster(t, 3, servertest.Options{})
	old := c.LeaderIndex()
	f := c.FollowerIndexes()[0]
	c.Kill(old)
	cl := c.Client(f)
	if _, err := cl.Functions().Create(ctx(t), &api.FunctionSpec{Name: "during-election", Image: "busybox"}); err != nil {
		t.Fatalf("create during the election: %v", err)
	}
	id, err := cl.Calls().Call(ctx(t), "during-election", nil, nil)
	if err != nil {
		t.Fatalf("call during the election: %v", err)
	}
	waitState(t, cl, id, api.StateFinished)
}

// TestHealthMeansReady: with ACLs on, an agent is healthy only once the
// bootstrap token works, and a request with it never meets a 401 or 503.
func TestHealthMeansReady(t *testing.T) {
	c := servertest.NewCluster(t, 1, servertest.Options{ACL: true})
	r := do(t, http.MethodGet, c.URL(0)+"/v1/agent/health", "", nil).want(t, http.StatusOK)
	var h api.Health
	if err := json.Unmarshal(r.Body, &h); err != nil {
		t.Fatal(err)
	}
	if !h.OK || h.Checks["raft"] != "ok" || h.Checks["acl"] != "ok" || h.Checks["executor"] != "ok" {
		t.Fatalf("health %+v", h)
	}
	if _, _, err := c.Client(0).Functions().List(ctx(t), nil, nil); err != nil {
		t.Fatalf("the admin token right after health said ok: %v", err)
	}
	// A server that lost its cluster says why, and is not ready.
	c3 := servertest.NewCluster(t, 3, servertest.Options{})
	lead := c3.LeaderIndex()
	for _, i := range c3.FollowerIndexes() {
		c3.Kill(i)
	}
	servertest.Eventually(t, 90*time.Second, func() error {
		r := do(t, http.MethodGet, c3.URL(lead)+"/v1/agent/health", "", nil)
		if r.Code != http.StatusServiceUnavailable {
			return &unexpected{r}
		}
		return nil
	})
}

type unexpected struct{ r *response }

func (u *unexpected) Error() string {
	return "HTTP " + http.StatusText(u.r.Code) + ": " + string(u.r.Body)
}

// TestHealthyMeansTheBootstrapTokenWorks: an agent with ACLs on, polled
// from its first moment: once health says ok, the generated bootstrap
// token is in its file and works (the harness used to read it too early).
func TestHealthyMeansTheBootstrapTokenWorks(t *testing.T) {
	dir := t.TempDir()
	eng := servertest.NewEngine()
	s, err := server.New(server.Config{
		DataDir: dir, HTTPAddr: "127.0.0.1:0", RaftAddr: "127.0.0.1:0", ACL: true,
		Executor: eng.NewExecutor(), RaftTuning: servertest.ShortTimers, ClusterKey: servertest.ClusterKey,
		Logger: hclog.New(&hclog.LoggerOptions{Output: io.Discard}),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Shutdown(false) })
	url := "http://" + s.HTTPAddr()
	servertest.Eventually(t, 90*time.Second, func() error {
		resp, err := http.Get(url + "/v1/agent/health")
		if err != nil {
			return err
		}
		r := readResponse(t, resp)
		if r.Code != http.StatusOK {
			return &unexpected{r}
		}
		return nil
	})
	tok, err := os.ReadFile(filepath.Join(dir, server.BootstrapTokenFile))
	if err != nil {
		t.Fatalf("healthy, but no bootstrap token file: %v", err)
	}
	do(t, http.MethodGet, url+"/v1/functions", strings.TrimSpace(string(tok)), nil).want(t, http.StatusOK)
}

// TestFirstRequestOfAFreshAgentWaits: a request sent as soon as a new
// agent's HTTP answers (before it elected itself) is held until the agent
// is ready, then served: the first user neither fails nor retries.
func TestFirstRequestOfAFreshAgentWaits(t *testing.T) {
	eng := servertest.NewEngine()
	s, err := server.New(server.Config{
		DataDir: t.TempDir(), HTTPAddr: "127.0.0.1:0", RaftAddr: "127.0.0.1:0", ClusterKey: servertest.ClusterKey,
		Executor: eng.NewExecutor(), Logger: hclog.New(&hclog.LoggerOptions{Output: io.Discard}),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Shutdown(false) })
	cl, err := api.NewClient(&api.Config{Address: s.HTTPAddr(), LeaderWait: -1})
	if err != nil {
		t.Fatal(err)
	}
	if s.IsLeader() {
		t.Log("the agent elected itself before the first request; the test proves less this time")
	}
	if _, err := cl.Functions().Create(ctx(t), &api.FunctionSpec{Name: "first", Image: "busybox"}); err != nil {
		t.Fatalf("the first request of a fresh agent: %v", err)
	}
}

// TestHungStartIsRetried: an executor Start that does not answer (an
// engine that hangs) does not hold the call for ever: past the start
// timeout it goes back to the queue, is started again, and runs once.
func TestHungStartIsRetried(t *testing.T) {
	c := servertest.NewCluster(t, 1, servertest.Options{Configure: func(_ int, cfg *server.Config) {
		cfg.StartTimeout = 300 * time.Millisecond
	}})
	cl := c.Client(0)
	createFn(t, cl, "hung", "echo", "ok")
	c.Engine.HoldStarts()
	id := call(t, cl, "hung", "")
	servertest.Eventually(t, time.Minute, func() error {
		if n := c.Engine.Starts(id); n < 3 {
			return fmt.Errorf("%d starts so far", n)
		}
		return nil
	})
	if got, _, err := cl.Calls().Info(ctx(t), id, nil); err != nil || got.State != api.StatePending {
		t.Fatalf("while starts hang: %+v %v, want PENDING", got, err)
	}
	c.Engine.ReleaseStarts()
	waitState(t, cl, id, api.StateFinished)
	if n := c.Engine.Runs(id); n != 1 {
		t.Fatalf("%d runs, want 1", n)
	}
	if !strings.Contains(c.Logs(), "did not start the call within 300ms") {
		t.Errorf("no warning about the hung start in the log")
	}
}
