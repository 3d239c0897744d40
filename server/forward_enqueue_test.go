package server_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hyperfunc/hyperfunc/api"
	"github.com/hyperfunc/hyperfunc/fsm"
	"github.com/hyperfunc/hyperfunc/server"
	"github.com/hyperfunc/hyperfunc/server/servertest"
)

// TestFollowerBatchesAsyncCalls: async calls sent to a follower are queued
// through its batcher (not proxied one by one), run, and keep the errors
// the leader would answer: 404 for an unknown function, 429 past the queue
// bound, on both API faces.
func TestFollowerBatchesAsyncCalls(t *testing.T) {
	c := servertest.NewCluster(t, 3, servertest.Options{Configure: func(i int, cfg *server.Config) {
		cfg.MaxQueued = 40
		cfg.DefaultQuota = 1
	}})
	c.WaitForLeader()
	f := c.FollowerIndexes()[0]
	fc := c.Client(f)
	createFn(t, c.Client(c.LeaderIndex()), "hold", "sleep")
	fn := createFn(t, fc, "echo", "cat")
	// (A call right after the create is proxied to the leader, whose
	// state has the function; once the follower's replica has it too, the
	// follower batches.)
	servertest.Eventually(t, 60*time.Second, func() error {
		if f, _ := c.Server(f).Store().Function(nil, "default/echo"); f == nil {
			return fmt.Errorf("the follower's replica does not have the function yet")
		}
		return nil
	})

	// 40 concurrent async calls through the follower: all accepted.
	var wg sync.WaitGroup
	ids := make([]string, 40)
	errs := make([]error, 40)
	for i := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ids[i], errs[i] = fc.Calls().Call(ctx(t), "echo", strings.NewReader(fmt.Sprint(i)), nil)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("call %d through the follower: %v", i, err)
		}
	}
	// The follower's replica knew the function by then: the calls went
	// through its batcher, not the proxy.
	m := do(t, http.MethodGet, c.URL(f)+"/metrics", "", nil)
	if !strings.Contains(string(m.Body), "hyperfunc_calls_forwarded_batched_total") ||
		strings.Contains(string(m.Body), "hyperfunc_calls_forwarded_batched_total 0\n") {
		t.Fatalf("no call went through the follower's batcher")
	}
	// Every call exists and finishes.
	for i, id := range ids {
		servertest.Eventually(t, 60*time.Second, func() error {
			l := c.LeaderIndex()
			if l < 0 {
				return fmt.Errorf("no leader")
			}
			call, _, err := c.Client(l).Calls().Info(ctx(t), id, nil)
			if err != nil || call.State != api.StateFinished {
				return fmt.Errorf("call %d: %v %v", i, call, err)
			}
			return nil
		})
	}
	// The per-function address on a follower: async call accepted.
	host := strings.Split(strings.TrimPrefix(fn.Address, "http://"), "/")[0]
	addr := strings.Replace(fn.Address, host, c.Node(f).HTTPAddr, 1)
	if r := do(t, http.MethodPost, addr, "", "x"); r.Code != http.StatusAccepted {
		t.Fatalf("per-function address on a follower: HTTP %d %s", r.Code, r.Body)
	}
	// Unknown function: 404, answered by the follower.
	if _, err := fc.Calls().Call(ctx(t), "nope", nil, nil); api.StatusCode(err) != 404 {
		t.Fatalf("unknown function through a follower: %v", err)
	}
	// Fill the queue behind a held call (quota 1), then one past: 429.
	c.Engine.HoldStarts()
	defer c.Engine.ReleaseStarts()
	call(t, fc, "hold", "")
	var last error
	for i := 0; i < 45 && last == nil; i++ {
		_, last = fc.Calls().Call(ctx(t), "hold", nil, nil)
	}
	if api.StatusCode(last) != 429 {
		t.Fatalf("past the queue bound through a follower: %v, want 429", last)
	}
}

// TestFollowerProxiesLargeAsyncCalls: an async call whose body is past
// the batcher's bound goes to the leader as it came (raw, not in a JSON
// batch in base64), and its stdin arrives whole; one at the bound is
// batched.
func TestFollowerProxiesLargeAsyncCalls(t *testing.T) {
	c := servertest.NewCluster(t, 3, servertest.Options{})
	c.WaitForLeader()
	f := c.FollowerIndexes()[0]
	fc := c.Client(f)
	createFn(t, fc, "echo", "cat")
	servertest.Eventually(t, 60*time.Second, func() error {
		if f, _ := c.Server(f).Store().Function(nil, "default/echo"); f == nil {
			return fmt.Errorf("the follower's replica does not have the function yet")
		}
		return nil
	})
	counter := func(name string) int {
		m := do(t, http.MethodGet, c.URL(f)+"/metrics", "", nil)
		for _, l := range strings.Split(string(m.Body), "\n") {
			if v, ok := strings.CutPrefix(l, name+" "); ok {
				var n int
				fmt.Sscan(v, &n)
				return n
			}
		}
		return 0
	}
	for _, tc := range []struct {
		size    int
		batched bool
	}{{server.BatchedBodyMax, true}, {server.BatchedBodyMax + 1, false}} {
		stdin := bytes.Repeat([]byte{0, 'x', 255}, tc.size/3+1)[:tc.size]
		batched, proxied := counter("hyperfunc_calls_forwarded_batched_total"), counter("hyperfunc_requests_forwarded_total")
		id, err := fc.Calls().Call(ctx(t), "echo", bytes.NewReader(stdin), nil)
		if err != nil {
			t.Fatalf("%d bytes through a follower: %v", tc.size, err)
		}
		b, p := counter("hyperfunc_calls_forwarded_batched_total")-batched, counter("hyperfunc_requests_forwarded_total")-proxied
		// Nothing else is batched meanwhile; other requests may be proxied.
		if (b == 1) != tc.batched || (!tc.batched && p < 1) {
			t.Fatalf("%d bytes: batched +%d, proxied +%d; want batched %v", tc.size, b, p, tc.batched)
		}
		servertest.Eventually(t, 60*time.Second, func() error {
			rc, _, err := c.Client(c.LeaderIndex()).Calls().Output(ctx(t), id, false)
			if err != nil {
				return err
			}
			if rc == nil {
				return fmt.Errorf("call %s has not ended", id)
			}
			out, err := io.ReadAll(rc)
			rc.Close()
			if err != nil {
				return err
			}
			if !bytes.Equal(out, stdin) {
				return fmt.Errorf("%d bytes in, %d out", len(stdin), len(out))
			}
			return nil
		})
	}
}

// TestLeaderChecksForwardedCredentials: a follower's replica may not have
// seen a secret rotated yet, so the leader checks the credential of every
// forwarded call against its own state and queues nothing on a stale one.
func TestLeaderChecksForwardedCredentials(t *testing.T) {
	c := servertest.NewCluster(t, 1, servertest.Options{})
	c.WaitForLeader()
	createFn(t, c.Client(0), "f", "cat")
	body := `{"calls":[{"function":"default/f","owner":"default"}],"creds":[{"secret_hash":"not-the-hash"}]}`
	r := do(t, http.MethodPost, c.URL(0)+"/v1/internal/enqueue", "", body, "X-Hyper-Cluster-Key", server.InternalToken(servertest.ClusterKey)).want(t, 200)
	if !strings.Contains(string(r.Body), `"kind":"not_found"`) || strings.Contains(string(r.Body), "call_id") {
		t.Fatalf("a stale secret was not refused: %s", r.Body)
	}
}

// A forwarded call is re-checked as a client's: even a peer that holds the
// cluster key cannot pick the call's ID, env or time, nor pass the stdin
// limit, nor send a batch past the bounds.
func TestLeaderRebuildsForwardedCalls(t *testing.T) {
	c := servertest.NewCluster(t, 1, servertest.Options{})
	c.WaitForLeader()
	createFn(t, c.Client(0), "f", "cat")
	// The queued call is read back below; a call that ran to its end
	// already has no env and no stdin any more (a busy CI machine's
	// dispatcher got there first once).
	c.Engine.HoldStarts()
	t.Cleanup(c.Engine.ReleaseStarts)
	tok := server.InternalToken(servertest.ClusterKey)
	limit := 1 << 20 // the default stdin limit
	post := func(body string) *response {
		return do(t, http.MethodPost, c.URL(0)+"/v1/internal/enqueue", "", body, "X-Hyper-Cluster-Key", tok)
	}
	b64 := func(n int) string { return base64.StdEncoding.EncodeToString(bytes.Repeat([]byte("x"), n)) }
	// A call record's fields are not part of a forwarded call: refused whole.
	for _, field := range []string{`"id":"chosen"`, `"env":{"LD_PRELOAD":"/x.so"}`, `"created_at":"2001-01-01T00:00:00Z"`, `"key":"k"`} {
		post(`{"calls":[{"function":"default/f","owner":"default",`+field+`}],"creds":[{}]}`).want(t, 400)
	}
	if calls, err := c.Server(0).Store().CallsOfFunction(nil, "default/f"); err != nil || len(calls) != 0 {
		t.Fatalf("%d calls queued by refused batches (%v)", len(calls), err)
	}
	batch := `{"calls":[{"function":"default/f","owner":"default","headers":{"X-Ok":["1"]},"stdin":"` + b64(limit) + `"},` +
		`{"function":"default/f","owner":"default","stdin":"` + b64(limit+1) + `"}],"creds":[{},{}]}`
	r := post(batch).want(t, 200)
	var out []struct {
		CallID string `json:"call_id"`
		Kind   string `json:"kind"`
	}
	if err := json.Unmarshal(r.Body, &out); err != nil || len(out) != 2 {
		t.Fatalf("outcomes %s: %v", r.Body, err)
	}
	if out[0].CallID == "" || out[0].CallID == "chosen" || out[1].Kind != "too_large" || out[1].CallID != "" {
		t.Fatalf("outcomes %+v: want the leader's ID for the call at the stdin limit, too_large past it", out)
	}
	call, err := c.Server(0).Store().Call(nil, out[0].CallID)
	if err != nil || call == nil {
		t.Fatalf("call %s: %v", out[0].CallID, err)
	}
	stdin, _ := c.Server(0).Store().Stdin(call.ID)
	if len(call.Env) != 1 || call.Env["HTTP_X_OK"] != "1" || call.CreatedAt.Year() < 2020 || len(stdin) != limit || call.StdinSize != int64(limit) {
		t.Fatalf("the leader kept what the peer chose: env %v created %v stdin %d", call.Env, call.CreatedAt, len(stdin))
	}
	// A batch past fsm.MaxBatch calls is refused whole.
	var many strings.Builder
	many.WriteString(`{"calls":[`)
	for i := range fsm.MaxBatch + 1 {
		if i > 0 {
			many.WriteString(",")
		}
		many.WriteString(`{"function":"default/f","owner":"default"}`)
	}
	many.WriteString(`],"creds":[` + strings.Repeat(`{},`, fsm.MaxBatch) + `{}]}`)
	post(many.String()).want(t, 400)
}
