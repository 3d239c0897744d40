package server_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/hyperfunc/hyperfunc/executor"
	"github.com/hyperfunc/hyperfunc/server"
	"github.com/hyperfunc/hyperfunc/server/servertest"
)

// hangGuard only catches a hang: every wait below is for an event.
const hangGuard = 2 * time.Minute

// closedByServer reads c until the server closes it; it fails on a hang.
func closedByServer(t *testing.T, c net.Conn) []byte {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(hangGuard))
	b, err := io.ReadAll(c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the server kept the connection open for %s", hangGuard)
	}
	return b
}

// Idle keep-alive connections and trickled bodies are closed, while a
// sync call whose body was read runs as long as it takes.
func TestHTTPTimeouts(t *testing.T) {
	engine := servertest.NewEngine()
	c := servertest.NewCluster(t, 1, servertest.Options{Engine: engine, Configure: func(_ int, cfg *server.Config) {
		cfg.IdleTimeout = 300 * time.Millisecond
		cfg.BodyReadTimeout = 2 * time.Second // the sync call's two bytes arrive well within it, even on a busy machine
	}})
	c.WaitForLeader()
	createFn(t, c.Client(0), "hold", "hold")
	engine.Handle("hold", func(_ context.Context, _ executor.Spec, release <-chan struct{}) servertest.Outcome {
		<-release
		return servertest.Outcome{Stdout: []byte("done")}
	})

	// A sync call, its body read at once, then waiting on its function.
	type result struct {
		code int
		body []byte
		err  error
	}
	syncDone := make(chan result, 1)
	go func() {
		resp, err := http.Post(c.URL(0)+"/v1/functions/hold/call?sync=true", "application/octet-stream", bytes.NewReader([]byte("in")))
		if err != nil {
			syncDone <- result{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		syncDone <- result{resp.StatusCode, b, err}
	}()

	deadline := time.Now().Add(hangGuard)
	for len(engine.StartOrder()) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the sync call never started")
		}
		time.Sleep(10 * time.Millisecond)
	}

	// An idle keep-alive connection is closed.
	idle, err := net.Dial("tcp", c.Node(0).HTTPAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	if _, err := idle.Write([]byte("GET /v1/status/leader HTTP/1.1\r\nHost: x\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(idle), nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("first request on the idle connection: %v %v", resp, err)
	}
	closedByServer(t, idle)

	// A body that stops after 10 of its 100 bytes is cut.
	slow, err := net.Dial("tcp", c.Node(0).HTTPAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	if _, err := slow.Write([]byte("POST /v1/functions/hold/call HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789")); err != nil {
		t.Fatal(err)
	}
	if out := closedByServer(t, slow); bytes.HasPrefix(out, []byte("HTTP/1.1 2")) {
		t.Fatalf("a trickled body was accepted: %q", out)
	}

	// The sync call's connection has had its body read for longer than the
	// slow one's deadline: it still waits, and answers once the call ends.
	select {
	case r := <-syncDone:
		t.Fatalf("the sync call ended before its function: %d %q %v", r.code, r.body, r.err)
	default:
	}
	engine.ReleaseAll()
	select {
	case r := <-syncDone:
		if r.err != nil || r.code != 200 || string(r.body) != "done" {
			t.Fatalf("sync call: %d %q %v", r.code, r.body, r.err)
		}
	case <-time.After(hangGuard):
		t.Fatal("the sync call never answered")
	}
}
