package server_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hyperfunc/hyperfunc/api"
	"github.com/hyperfunc/hyperfunc/server/servertest"
)

// TestShutdownEndsLongPolls: a server that stops answers its blocking
// queries at once instead of leaving clients hanging for their wait.
func TestShutdownEndsLongPolls(t *testing.T) {
	c := servertest.NewCluster(t, 3, servertest.Options{})
	createFn(t, c.Client(c.LeaderIndex()), "watched", "cat")
	f := c.FollowerIndexes()[0]
	var meta *api.QueryMeta
	servertest.Eventually(t, 60*time.Second, func() (err error) {
		_, meta, err = c.Client(f).Functions().Info(ctx(t), "watched", &api.QueryOptions{Stale: true})
		return err
	})
	url := c.URL(f) + "/v1/functions/watched?stale&wait=1m&index=" + strconv.FormatUint(meta.LastIndex, 10)
	done := startRequest(t, http.MethodGet, url, "")
	waitForGoroutine(t, "server.(*Server).blocking")
	start := time.Now()
	c.Kill(f)
	select {
	case r := <-done:
		t.Logf("blocking query ended %s after the kill: HTTP %d", time.Since(start).Round(time.Millisecond), r.Code)
		if r.Code != http.StatusServiceUnavailable {
			t.Fatalf("a query cut short by shutdown answered HTTP %d %q, want 503", r.Code, r.Body)
		}
		r.errorBody(t)
	case <-time.After(2 * time.Minute):
		t.Fatalf("blocking query still hangs %s after its server stopped", time.Since(start).Round(time.Second))
	}
}

// startRequest sends a request on a connection of its own and returns once
// it is written (a pooled connection could be idle on the server's side and
// simply closed by Shutdown); the answer comes on the channel.
func startRequest(t *testing.T, method, url string, body string) <-chan *response {
	t.Helper()
	wrote := make(chan struct{})
	trace := &httptrace.ClientTrace{WroteRequest: func(httptrace.WroteRequestInfo) { close(wrote) }}
	req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), method, url, strings.NewReader(body))
	out := make(chan *response, 1)
	// The goroutine does not fail the test itself (t.Fatal must run on the
	// test's goroutine): an error is an answer with Code 0 and the error
	// as its body, which every caller's code check rejects.
	ended := make(chan struct{})
	go func() {
		defer close(ended)
		hc := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
		resp, err := hc.Do(req)
		if err != nil {
			out <- &response{Code: 0, Body: []byte(err.Error())}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			out <- &response{Code: 0, Body: []byte(fmt.Sprintf("reading the answer (HTTP %d): %v", resp.StatusCode, err))}
			return
		}
		out <- &response{Code: resp.StatusCode, Header: resp.Header, Body: b}
	}()
	// A request that fails before it is written (a refused dial) never
	// closes wrote: its error is on out.
	select {
	case <-wrote:
	case <-ended:
	}
	return out
}

func awaitResponse(t *testing.T, ch <-chan *response) *response {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(2 * time.Minute):
		t.Fatal("no answer")
		return nil
	}
}

// TestSyncCallAnswersWhenItCannotWait: a sync call never answers a silent
// empty 200 when its wait ends without the call ending: 404 when its
// queued call was deleted with the function, 503 when the server stops.
func TestSyncCallAnswersWhenItCannotWait(t *testing.T) {
	c := servertest.NewCluster(t, 1, servertest.Options{Configure: withQuota(1, 0)})
	cl := c.Client(0)
	createFn(t, cl, "slow", "sleep")
	createFn(t, cl, "doomed", "cat")
	blocker := call(t, cl, "slow", "")
	waitRunning(t, c.Engine, blocker)

	queued := startRequest(t, "POST", c.URL(0)+"/v1/functions/doomed/call?sync=true", "x")
	servertest.Eventually(t, 60*time.Second, func() error {
		st, err := cl.Functions().Status(ctx(t), "doomed")
		if err == nil && st.Pending != 1 {
			return fmt.Errorf("status %+v", st)
		}
		return err
	})
	if err := cl.Functions().Delete(ctx(t), "doomed"); err != nil {
		t.Fatal(err)
	}
	r := awaitResponse(t, queued)
	if r.Code != http.StatusNotFound {
		t.Fatalf("sync call of a deleted function: HTTP %d %q, want 404", r.Code, r.Body)
	}
	r.errorBody(t)

	c.Engine.Release(blocker)
	running := startRequest(t, "POST", c.URL(0)+"/v1/functions/slow/call?sync=true", "y")
	servertest.Eventually(t, 60*time.Second, func() error {
		if n := len(c.Engine.Running()); n != 1 {
			return fmt.Errorf("%d calls run", n)
		}
		return nil
	})
	c.Kill(0)
	r = awaitResponse(t, running)
	if r.Code != http.StatusServiceUnavailable {
		t.Fatalf("sync call on a server that stops: HTTP %d %q, want 503", r.Code, r.Body)
	}
	r.errorBody(t)
}

// waitForGoroutine waits until a goroutine runs fn: the one way to know a
// request is inside its handler rather than still in the listen backlog
// (where a closing listener drops it and proves nothing).
func waitForGoroutine(t *testing.T, fn string) {
	t.Helper()
	servertest.Eventually(t, 60*time.Second, func() error {
		buf := make([]byte, 1<<22)
		if !strings.Contains(string(buf[:runtime.Stack(buf, true)]), fn) {
			return fmt.Errorf("no goroutine in %s", fn)
		}
		return nil
	})
}
