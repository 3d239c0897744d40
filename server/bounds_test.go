package server_test

import (
	"bytes"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hyperfunc/hyperfunc/server"
	"github.com/hyperfunc/hyperfunc/server/servertest"
)

// One user cannot hold more than -max-queued-bytes of stdin in unfinished
// calls, nor more than -max-functions functions: at the bound it works,
// one past is a 429 that says which bound, and nothing of it is queued.
func TestPerUserByteBounds(t *testing.T) {
	engine := servertest.NewEngine()
	c := servertest.NewCluster(t, 1, servertest.Options{Engine: engine, Configure: func(_ int, cfg *server.Config) {
		cfg.MaxQueuedBytes = 2 << 20
		cfg.MaxFunctions = 2
	}})
	c.WaitForLeader()
	createFn(t, c.Client(0), "f", "cat")
	engine.SetUnavailable(true) // the calls stay queued
	call := func(n int) *response {
		return do(t, http.MethodPost, c.URL(0)+"/v1/functions/f/call", "", bytes.Repeat([]byte("x"), n))
	}
	call(1<<20).want(t, 202)
	call(1<<20).want(t, 202) // 2 MiB: at the bound
	r := call(1).want(t, 429)
	if msg := r.errorBody(t); !strings.Contains(msg, "bytes of stdin") {
		t.Fatalf("429 message %q does not say which bound", msg)
	}
	createFn(t, c.Client(0), "g", "cat") // the second function: at the bound
	r = do(t, http.MethodPost, c.URL(0)+"/v1/functions", "", map[string]any{"name": "h", "image": "busybox", "command": []string{"cat"}}).want(t, 429)
	if msg := r.errorBody(t); !strings.Contains(msg, "functions") {
		t.Fatalf("429 message %q does not say which bound", msg)
	}
}

// The Raft log is compacted by bytes, not only by entry count: a few
// large entries, far fewer than SnapshotThreshold, make a snapshot.
func TestLogCompactedBySize(t *testing.T) {
	c := servertest.NewCluster(t, 1, servertest.Options{Configure: func(_ int, cfg *server.Config) {
		cfg.LogBytesPerSnapshot = 256 << 10
	}})
	c.WaitForLeader()
	createFn(t, c.Client(0), "f", "cat")
	for range 4 {
		do(t, http.MethodPost, c.URL(0)+"/v1/functions/f/call", "", bytes.Repeat([]byte("x"), 100<<10)).want(t, 202)
	}
	deadline := time.Now().Add(time.Minute)
	for c.Server(0).Raft().Stats()["last_snapshot_index"] == "0" {
		if time.Now().After(deadline) {
			t.Fatalf("no snapshot after 400 KiB of log with a 256 KiB budget: %v", c.Server(0).Raft().Stats())
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Entries of ~100 KiB: the log kept behind the snapshot is counted in
	// bytes (a quarter of the budget), not Raft's 10,240 entries.
	if n := c.Server(0).Raft().ReloadableConfig().TrailingLogs; n >= 10240 {
		t.Fatalf("TrailingLogs still %d after large entries", n)
	}
}
