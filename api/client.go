package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

// DefaultAddress is where a -dev agent listens.
const DefaultAddress = "http://127.0.0.1:4680"

// Config of a Client. Zero fields take HYPER_ADDR and HYPER_TOKEN, then the
// defaults.
type Config struct {
	Address    string
	Token      string
	HTTPClient *http.Client
	// LeaderWait is how long a request answered "no cluster leader, retry"
	// (503 with Retry-After) is retried: an election in progress. Zero
	// means DefaultLeaderWait; negative means no retries.
	LeaderWait time.Duration
}

// DefaultLeaderWait rides out an election, which takes a few seconds.
const DefaultLeaderWait = 30 * time.Second

// DefaultConfig reads HYPER_ADDR and HYPER_TOKEN.
func DefaultConfig() *Config {
	c := &Config{Address: os.Getenv("HYPER_ADDR"), Token: os.Getenv("HYPER_TOKEN")}
	if c.Address == "" {
		c.Address = DefaultAddress
	}
	return c
}

// Client talks to one hyperfunc agent; any agent of a cluster will do.
type Client struct {
	addr       string
	token      string
	hc         *http.Client
	leaderWait time.Duration
}

// NewClient builds a client. The address may omit the scheme.
func NewClient(c *Config) (*Client, error) {
	if c == nil {
		c = DefaultConfig()
	}
	addr := c.Address
	if addr == "" {
		addr = DefaultAddress
	}
	if !strings.Contains(addr, "://") {
		addr = "http://" + addr
	}
	u, err := url.Parse(addr)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("invalid address %q", c.Address)
	}
	hc := c.HTTPClient
	if hc == nil {
		// No overall timeout: sync calls and --wait may block for hours.
		hc = &http.Client{}
	}
	wait := c.LeaderWait
	if wait == 0 {
		wait = DefaultLeaderWait
	}
	return &Client{addr: strings.TrimRight(addr, "/"), token: c.Token, hc: hc, leaderWait: wait}, nil
}

// Address is the agent address the client uses.
func (c *Client) Address() string { return c.addr }

// Error is an error answer of the API.
type Error struct {
	StatusCode int
	Message    string
	CallID     string
}

func (e *Error) Error() string {
	return fmt.Sprintf("%s (HTTP %d)", e.Message, e.StatusCode)
}

// StatusCode returns the HTTP status of an API error, or 0.
func StatusCode(err error) int {
	var e *Error
	if errors.As(err, &e) {
		return e.StatusCode
	}
	return 0
}

// QueryOptions shape reads.
type QueryOptions struct {
	WaitIndex uint64        // block until the state index passes this
	WaitTime  time.Duration // for at most this long
	Stale     bool          // let a follower answer
}

// QueryMeta is what a read answers besides its value.
type QueryMeta struct {
	LastIndex uint64
}

func (c *Client) newRequest(ctx context.Context, method, path string, q url.Values, body io.Reader) (*http.Request, error) {
	u := c.addr + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return nil, err
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	return req, nil
}

// do sends the request and turns error answers into *Error. The caller
// closes the body of a successful answer. A 503 with Retry-After (the
// agent knew no leader and did nothing with the request: an election) is
// retried for up to the client's LeaderWait when the body can be sent
// again.
func (c *Client) do(req *http.Request) (*http.Response, error) {
	deadline := time.Now().Add(c.leaderWait)
	for {
		resp, err := c.hc.Do(req)
		if err != nil {
			return nil, fmt.Errorf("%s %s: %w", req.Method, c.addr, err)
		}
		if resp.StatusCode < 400 {
			return resp, nil
		}
		delay, retry := retryAfter(resp)
		if retry && (req.Body == nil || req.Body == http.NoBody || req.GetBody != nil) && time.Now().Add(delay).Before(deadline) {
			io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
			resp.Body.Close()
			if err := sleepCtx(req.Context(), delay); err != nil {
				return nil, fmt.Errorf("%s %s: %w", req.Method, c.addr, err)
			}
			if req.GetBody != nil {
				body, err := req.GetBody()
				if err != nil {
					return nil, err
				}
				req.Body = body
			}
			continue
		}
		defer resp.Body.Close()
		return nil, decodeError(resp)
	}
}

// retryAfter reads the Retry-After of a 503 (seconds), capped so a retry
// happens soon: an election takes a second or two.
func retryAfter(resp *http.Response) (time.Duration, bool) {
	v := resp.Header.Get("Retry-After")
	if resp.StatusCode != http.StatusServiceUnavailable || v == "" {
		return 0, false
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return 0, false
	}
	return min(time.Duration(n)*time.Second, 2*time.Second) + 100*time.Millisecond, true
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func decodeError(resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var eb ErrorBody
	if json.Unmarshal(b, &eb) == nil && eb.Error != "" {
		return &Error{StatusCode: resp.StatusCode, Message: eb.Error, CallID: eb.CallID}
	}
	msg := strings.TrimSpace(string(b))
	if msg == "" {
		msg = http.StatusText(resp.StatusCode)
	}
	return &Error{StatusCode: resp.StatusCode, Message: msg}
}

func (c *Client) jsonRequest(ctx context.Context, method, path string, q url.Values, in, out any) (*QueryMeta, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, err
		}
		body = bytes.NewReader(b)
	}
	req, err := c.newRequest(ctx, method, path, q, body)
	if err != nil {
		return nil, err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	meta := &QueryMeta{}
	meta.LastIndex, _ = strconv.ParseUint(resp.Header.Get(HeaderIndex), 10, 64)
	if out != nil {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			return meta, fmt.Errorf("decoding answer of %s %s: %w", method, path, err)
		}
	}
	return meta, nil
}

func queryValues(o *QueryOptions) url.Values {
	q := url.Values{}
	if o == nil {
		return q
	}
	if o.WaitIndex > 0 {
		q.Set("index", strconv.FormatUint(o.WaitIndex, 10))
	}
	if o.WaitTime > 0 {
		q.Set("wait", o.WaitTime.String())
	}
	if o.Stale {
		q.Set("stale", "")
	}
	return q
}

func (c *Client) get(ctx context.Context, path string, o *QueryOptions, out any) (*QueryMeta, error) {
	return c.jsonRequest(ctx, http.MethodGet, path, queryValues(o), nil, out)
}

func esc(s string) string { return url.PathEscape(s) }
