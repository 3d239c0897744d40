package server_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hyperfunc/hyperfunc/api"
	"github.com/hyperfunc/hyperfunc/server/servertest"
)

// ctx is a per-test context bounded well below the go test timeout.
func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return c
}

// response is a raw HTTP answer.
type response struct {
	Code   int
	Header http.Header
	Body   []byte
}

// errorBody decodes the JSON error every error answer must carry, and
// fails the test when it is missing.
func (r *response) errorBody(t *testing.T) string {
	t.Helper()
	if r.Code < 400 {
		t.Fatalf("HTTP %d is not an error: %s", r.Code, r.Body)
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("HTTP %d error with Content-Type %q, not JSON: %q", r.Code, ct, r.Body)
	}
	var eb api.ErrorBody
	if err := json.Unmarshal(r.Body, &eb); err != nil || eb.Error == "" {
		t.Fatalf("HTTP %d error body is not {\"error\": ...}: %q (%v)", r.Code, r.Body, err)
	}
	return eb.Error
}

// do sends one request. body may be nil, []byte, string or a value to
// encode as JSON.
func do(t *testing.T, method, url, token string, body any, hdr ...string) *response {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	case string:
		rd = strings.NewReader(b)
	default:
		enc, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(enc)
	}
	req, err := http.NewRequestWithContext(ctx(t), method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the answer: %v", method, url, err)
	}
	return &response{Code: resp.StatusCode, Header: resp.Header, Body: b}
}

// wantCode fails unless r has status code want.
func (r *response) want(t *testing.T, want int) *response {
	t.Helper()
	if r.Code != want {
		t.Fatalf("HTTP %d, want %d: %s", r.Code, want, r.Body)
	}
	return r
}

func createFn(t *testing.T, cl *api.Client, name string, command ...string) *api.Function {
	t.Helper()
	f, err := cl.Functions().Create(ctx(t), &api.FunctionSpec{Name: name, Image: "busybox", Command: command})
	if err != nil {
		t.Fatalf("create %s: %v", name, err)
	}
	return f
}

func call(t *testing.T, cl *api.Client, fn, stdin string) string {
	t.Helper()
	id, err := cl.Calls().Call(ctx(t), fn, strings.NewReader(stdin), nil)
	if err != nil {
		t.Fatalf("call %s: %v", fn, err)
	}
	return id
}

// waitState polls a call until it is in state.
func waitState(t *testing.T, cl *api.Client, id, state string) *api.Call {
	t.Helper()
	var got *api.Call
	servertest.Eventually(t, 60*time.Second, func() error {
		c, _, err := cl.Calls().Info(ctx(t), id, nil)
		if err != nil {
			return err
		}
		got = c
		if c.State != state {
			return fmt.Errorf("call %s is %s (%s), want %s", id, c.State, c.Message, state)
		}
		return nil
	})
	return got
}

// waitRunning waits until exactly these calls run in the engine.
func waitRunning(t *testing.T, eng *servertest.Engine, ids ...string) {
	t.Helper()
	servertest.Eventually(t, 60*time.Second, func() error {
		got := eng.Running()
		if fmt.Sprint(sortedCopy(got)) != fmt.Sprint(sortedCopy(ids)) {
			return fmt.Errorf("running %v, want %v", got, ids)
		}
		return nil
	})
}

func sortedCopy(s []string) []string { return slices.Sorted(slices.Values(s)) }

func jsonBody(s string) io.Reader { return strings.NewReader(s) }

func readResponse(t *testing.T, resp *http.Response) *response {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading the answer: %v", err)
	}
	return &response{Code: resp.StatusCode, Header: resp.Header, Body: b}
}

// newUser creates a user (quota 0: the default) and returns a client with
// a token of it on server i, and the token's secret.
func newUser(t *testing.T, c *servertest.Cluster, i int, name string, quota int, readOnly bool) (*api.Client, string) {
	t.Helper()
	admin := c.Client(i)
	if _, err := admin.Users().Info(ctx(t), name); api.StatusCode(err) == http.StatusNotFound {
		if _, err := admin.Users().Create(ctx(t), &api.User{Name: name, Quota: quota}); err != nil {
			t.Fatalf("create user %s: %v", name, err)
		}
	}
	tok, err := admin.Tokens().Create(ctx(t), &api.TokenRequest{User: name, ReadOnly: readOnly})
	if err != nil {
		t.Fatalf("token of %s: %v", name, err)
	}
	return c.ClientWithToken(i, tok.Secret), tok.Secret
}

// rawPost writes a request by hand, with extraHeaders as given (lines a
// Go client would refuse to send), and returns the status code.
func rawPost(t *testing.T, baseURL, path, token, extraHeaders string) int {
	t.Helper()
	host := strings.TrimPrefix(baseURL, "http://")
	conn, err := net.DialTimeout("tcp", host, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(60 * time.Second)) // only a hang, as ctx
	req := "POST " + path + " HTTP/1.1\r\nHost: " + host + "\r\nAuthorization: Bearer " + token +
		"\r\nContent-Length: 1\r\nConnection: close\r\n" + extraHeaders + "\r\nx"
	if _, err := io.WriteString(conn, req); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("reading the answer to a raw request: %v", err)
	}
	resp.Body.Close()
	return resp.StatusCode
}
