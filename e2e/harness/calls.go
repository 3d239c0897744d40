package harness

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/hyperfunc/hyperfunc/api"
)

// WaitCall follows a call with blocking queries until it reaches a final
// state, and returns its record. stale lets a follower answer.
func WaitCall(t testing.TB, c *api.Client, id string, timeout time.Duration, stale bool) *api.Call {
	t.Helper()
	call, err := WaitCallErr(context.Background(), c, id, timeout, stale)
	if err != nil {
		t.Fatalf("call %s: %v", id, err)
	}
	return call
}

// WaitCallErr is WaitCall as an error, for use off the test goroutine.
func WaitCallErr(ctx context.Context, c *api.Client, id string, timeout time.Duration, stale bool) (*api.Call, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var index uint64
	var last *api.Call
	for {
		call, meta, err := c.Calls().Info(ctx, id, &api.QueryOptions{WaitIndex: index, WaitTime: 5 * time.Second, Stale: stale})
		if err != nil {
			if ctx.Err() != nil {
				return last, ctx.Err()
			}
			// A node that lost its leader answers 503 for a while: poll on.
			if code := api.StatusCode(err); code == 0 || code >= 500 {
				if werr := sleepCtx(ctx, 100*time.Millisecond); werr != nil {
					return last, err
				}
				index = 0
				continue
			}
			return last, err
		}
		last = call
		if call.Done() {
			return call, nil
		}
		index = meta.LastIndex
	}
}

// sleepCtx waits d or until ctx ends (a back-off between retries of a
// failed request, never a synchronization).
func sleepCtx(ctx context.Context, d time.Duration) error {
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-tm.C:
		return nil
	}
}

// HTTPResult is a raw HTTP answer.
type HTTPResult struct {
	Code   int
	Body   []byte
	Header http.Header
}

// Do sends a raw request and reads the whole answer.
func Do(t testing.TB, method, url string, body []byte) *HTTPResult {
	t.Helper()
	r, err := DoErr(context.Background(), method, url, body)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	return r
}

// DoErr is Do as an error.
func DoErr(ctx context.Context, method, url string, body []byte) (*HTTPResult, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	return &HTTPResult{Code: resp.StatusCode, Body: b, Header: resp.Header}, nil
}
