package api

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"net/url"
	"strconv"
	"sync/atomic"
)

// Calls is the calls endpoint.
type Calls struct{ c *Client }

// Calls returns a handle on the calls endpoint.
func (c *Client) Calls() *Calls { return &Calls{c} }

// CallOptions shape a call.
type CallOptions struct {
	// Header is sent with the call; the function sees its entries as
	// environment variables (Content-Type as HTTP_CONTENT_TYPE).
	Header http.Header
}

func (k *Calls) callRequest(ctx context.Context, name string, stdin io.Reader, sync bool, o *CallOptions) (*http.Response, error) {
	q := url.Values{}
	if sync {
		q.Set("sync", "true")
	}
	if stdin == nil {
		stdin = http.NoBody
	}
	req, err := k.c.newRequest(ctx, http.MethodPost, "/v1/functions/"+esc(name)+"/call", q, stdin)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	if sync {
		req.Header.Set(HeaderEarlyCallID, "true") // CallSync reads the 102
	}
	if o != nil {
		for h, vs := range o.Header {
			// A caller's header replaces the default (Content-Type).
			req.Header.Del(h)
			for _, v := range vs {
				req.Header.Add(h, v)
			}
		}
	}
	return k.c.do(req)
}

// Call queues a call of the function with stdin as its input and returns
// the call ID at once.
func (k *Calls) Call(ctx context.Context, name string, stdin io.Reader, o *CallOptions) (string, error) {
	resp, err := k.callRequest(ctx, name, stdin, false, o)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var out CallAccepted
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return "", fmt.Errorf("decoding call answer: %w", err)
	}
	return out.CallID, nil
}

// CallSync calls the function and waits for its end. The returned body is
// the call's stdout; the caller closes it. A failed call is an *Error
// carrying the call ID. The agent sends the call ID in an informational
// answer before it waits, so when the wait is cut (a proxy's timeout, a
// dropped connection) the ID is still returned beside the error: the call
// goes on, and its output can be fetched with Output.
func (k *Calls) CallSync(ctx context.Context, name string, stdin io.Reader, o *CallOptions) (io.ReadCloser, string, error) {
	// The transport's read loop runs the trace hook, and may still run it
	// after the request returned with an error (a canceled context).
	var early atomic.Pointer[string]
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
			if id := h.Get(HeaderCallID); id != "" {
				early.Store(&id)
			}
			return nil
		},
	})
	resp, err := k.callRequest(ctx, name, stdin, true, o)
	if err != nil {
		id := ""
		if p := early.Load(); p != nil {
			id = *p
		}
		return nil, id, err
	}
	return resp.Body, resp.Header.Get(HeaderCallID), nil
}

// Info reads a call's record.
func (k *Calls) Info(ctx context.Context, id string, o *QueryOptions) (*Call, *QueryMeta, error) {
	var out Call
	meta, err := k.c.get(ctx, "/v1/calls/"+esc(id), o, &out)
	return &out, meta, err
}

// Output reads a call's stdout. Without wait, a call that has not ended
// answers with its state and a nil body (HTTP 201 running, 202 queued).
// With wait it blocks until the call ends. A failed call is an *Error
// (500, 504 timeout, 509 output too large; 410 when the output rotated out).
func (k *Calls) Output(ctx context.Context, id string, wait bool) (io.ReadCloser, string, error) {
	q := url.Values{}
	if wait {
		q.Set("wait", "true")
	}
	req, err := k.c.newRequest(ctx, http.MethodGet, "/v1/calls/"+esc(id)+"/output", q, nil)
	if err != nil {
		return nil, "", err
	}
	resp, err := k.c.do(req)
	if err != nil {
		return nil, "", err
	}
	state := resp.Header.Get(HeaderCallState)
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, state, nil
	}
	return resp.Body, state, nil
}

// Cancel cancels a queued or running call.
func (k *Calls) Cancel(ctx context.Context, id string) error {
	_, err := k.c.jsonRequest(ctx, http.MethodPost, "/v1/calls/"+esc(id)+"/cancel", nil, nil, nil)
	return err
}

// List lists calls of a function, newest last.
func (k *Calls) List(ctx context.Context, function string, o *QueryOptions) ([]*Call, *QueryMeta, error) {
	q := queryValues(o)
	q.Set("function", function)
	var out []*Call
	meta, err := k.c.jsonRequest(ctx, http.MethodGet, "/v1/calls", q, nil, &out)
	return out, meta, err
}

// LogOptions select log events.
type LogOptions struct {
	CallID string
	Tail   int  // only the last Tail events; 0 means all
	Follow bool // keep streaming new events
}

// Logs streams a function's log events to fn until the stream ends, ctx is
// done or fn returns an error.
func (k *Calls) Logs(ctx context.Context, function string, o *LogOptions, fn func(LogEvent) error) error {
	q := url.Values{}
	q.Set("format", "ndjson")
	if o != nil {
		if o.CallID != "" {
			q.Set("callid", o.CallID)
		}
		if o.Tail > 0 {
			q.Set("tail", strconv.Itoa(o.Tail))
		}
		if o.Follow {
			q.Set("follow", "true")
		}
	}
	req, err := k.c.newRequest(ctx, http.MethodGet, "/v1/functions/"+esc(function)+"/logs", q, nil)
	if err != nil {
		return err
	}
	resp, err := k.c.do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		if len(sc.Bytes()) == 0 {
			continue
		}
		var ev LogEvent
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			return fmt.Errorf("decoding log event: %w", err)
		}
		if err := fn(ev); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil && ctx.Err() == nil {
		return err
	}
	return nil
}
