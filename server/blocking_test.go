package server_test

import (
	"strconv"
	"testing"
	"time"

	"github.com/hyperfunc/hyperfunc/api"
	"github.com/hyperfunc/hyperfunc/server/servertest"
)

func TestBlockingQuery(t *testing.T) {
	c := servertest.NewCluster(t, 3, servertest.Options{})
	leader := c.LeaderIndex()
	createFn(t, c.Client(leader), "watched", "cat")
	r := do(t, "GET", c.URL(leader)+"/v1/functions/watched", "", nil).want(t, 200)
	idx, err := strconv.ParseUint(r.Header.Get(api.HeaderIndex), 10, 64)
	if err != nil || idx == 0 {
		t.Fatalf("X-Hyper-Index %q", r.Header.Get(api.HeaderIndex))
	}

	// Nothing changes: the query holds for its wait, then answers the
	// same index.
	start := time.Now()
	r = do(t, "GET", c.URL(leader)+"/v1/functions/watched?index="+strconv.FormatUint(idx, 10)+"&wait=300ms", "", nil).want(t, 200)
	if waited := time.Since(start); waited < 300*time.Millisecond {
		t.Fatalf("blocking query answered after %s, before its wait", waited)
	}
	if r.Header.Get(api.HeaderIndex) != strconv.FormatUint(idx, 10) {
		t.Fatalf("index moved to %s with no change", r.Header.Get(api.HeaderIndex))
	}

	// A change wakes blocked queries on every server: on the leader, on a
	// follower forwarding, and on a follower answering stale.
	type result struct {
		fn   *api.Function
		meta *api.QueryMeta
		err  error
	}
	for i := range c.N() {
		servertest.Eventually(t, 60*time.Second, func() error {
			_, _, err := c.Client(i).Functions().Info(ctx(t), "watched", &api.QueryOptions{Stale: true})
			return err
		})
	}
	var chans []chan result
	for i := range c.N() {
		for _, stale := range []bool{false, true} {
			ch := make(chan result, 1)
			chans = append(chans, ch)
			go func(cl *api.Client, stale bool) {
				f, meta, err := cl.Functions().Info(ctx(t), "watched", &api.QueryOptions{WaitIndex: idx, WaitTime: 30 * time.Second, Stale: stale})
				ch <- result{f, meta, err}
			}(c.Client(i), stale)
		}
	}
	timeout := int64(42)
	if _, err := c.Client(leader).Functions().Update(ctx(t), "watched", &api.FunctionUpdate{Timeout: &timeout}); err != nil {
		t.Fatal(err)
	}
	for i, ch := range chans {
		select {
		case res := <-ch:
			if res.err != nil {
				t.Fatalf("query %d: %v", i, res.err)
			}
			if res.meta.LastIndex <= idx || res.fn.Timeout != 42 {
				t.Fatalf("query %d woke at index %d (was %d) with timeout %d", i, res.meta.LastIndex, idx, res.fn.Timeout)
			}
		case <-time.After(2 * time.Minute):
			t.Fatalf("blocking query %d never woke", i)
		}
	}
}
