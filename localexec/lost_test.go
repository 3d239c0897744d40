package localexec_test

import (
	"context"
	"errors"
	"io"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/client"
	"github.com/hyperfunc/hyperfunc/api"
	"github.com/hyperfunc/hyperfunc/executor"
)

// engineProxy stands between the executor and dockerd, so a test can take
// the engine away and bring it back without restarting the real dockerd
// that other tests share.
type engineProxy struct {
	path, target string
	mu           sync.Mutex
	ln           net.Listener
	conns        map[net.Conn]bool
}

func newEngineProxy(t *testing.T, target string) *engineProxy {
	p := &engineProxy{
		path:   filepath.Join(t.TempDir(), "docker.sock"),
		target: target,
		conns:  map[net.Conn]bool{},
	}
	p.up(t)
	t.Cleanup(p.down)
	return p
}

func (p *engineProxy) up(t *testing.T) {
	ln, err := net.Listen("unix", p.path)
	if err != nil {
		t.Fatal(err)
	}
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("unix", p.target)
			if err != nil {
				_ = c.Close()
				continue
			}
			p.mu.Lock()
			p.conns[c], p.conns[u] = true, true
			p.mu.Unlock()
			go func() { _, _ = io.Copy(u, c); _ = u.Close() }()
			go func() { _, _ = io.Copy(c, u); _ = c.Close() }()
		}
	}()
}

// down drops the listener and every connection, as a dying dockerd does.
func (p *engineProxy) down() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		_ = p.ln.Close()
		p.ln = nil
	}
	for c := range p.conns {
		_ = c.Close()
	}
	clear(p.conns)
}

func TestEngineLostMidCall(t *testing.T) {
	t.Parallel()
	direct := dockerClient(t)
	target, ok := strings.CutPrefix(direct.DaemonHost(), "unix://")
	if !ok {
		t.Skipf("engine at %s: the proxy test needs a unix socket", direct.DaemonHost())
	}
	_, _, img := setup(t)
	p := newEngineProxy(t, target)
	cli, err := client.NewClientWithOpts(client.WithHost("unix://"+p.path), client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatal(err)
	}
	e := newExec(t, cli)

	s := spec(t, direct, img, "sleep", "60")
	start(t, e, s)
	next(t, e, s.CallID, time.Minute, executor.Running)
	p.down()
	ev := final(t, e, s.CallID)
	wantFailed(t, ev, api.ReasonLost, "docker engine")
	t.Logf("lost: %s", ev.Message)

	// The dispatcher releases the lost call while the engine is still away:
	// the executor retries on its own once it is back. The same executor
	// runs the next call.
	if err := e.Release(context.Background(), []executor.Handle{{CallID: s.CallID}}); err == nil {
		t.Fatal("Release without engine succeeded")
	}
	p.up(t)
	removed(t, direct, s.CallID)
	s2 := spec(t, direct, img, "echo", "back")
	if ev := run(t, e, s2); ev.Kind != executor.Finished || string(ev.Stdout) != "back\n" {
		t.Fatalf("after reconnect: %v %q %s", ev.Kind, ev.Stdout, ev.Message)
	}
	release(t, e, direct, executor.Handle{CallID: s2.CallID})

	// With the engine away, Start says unavailable (retry), not failed.
	p.down()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := e.Start(ctx, spec(t, direct, img, "true")); err == nil {
		t.Fatal("Start without engine succeeded")
	} else if !errors.Is(err, executor.ErrUnavailable) {
		t.Fatalf("Start without engine: %v, want ErrUnavailable", err)
	}
	if err := e.Health(ctx); err == nil {
		t.Fatal("Health without engine is ok")
	}
}
