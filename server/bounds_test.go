package server_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hyperfunc/hyperfunc/fsm"
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

// TestLargePayloadsChunked: stdin and stdout larger than one entry's
// payload reach Raft in chunks, through a follower too, and come back
// whole; no server applies an entry much past fsm.MaxEntryPayload.
func TestLargePayloadsChunked(t *testing.T) {
	const size = 2<<20 + 12345 // five chunks and a part
	c := servertest.NewCluster(t, 3, servertest.Options{Configure: func(_ int, cfg *server.Config) {
		cfg.MaxStdin, cfg.StdoutLimit = 3<<20, 3<<20
	}})
	c.WaitForVoters(c.WaitForLeader(), 3)
	createFn(t, c.Client(0), "f", "cat")
	stdin := make([]byte, size)
	for i := range stdin {
		stdin[i] = byte(i * 7)
	}
	for i := 0; i < 3; i++ { // the leader and the followers
		// A leadership change on a busy machine answers 503; the call
		// is made again (cat runs twice, harmlessly).
		servertest.Eventually(t, time.Minute, func() error {
			r := do(t, http.MethodPost, c.URL(i)+"/v1/functions/f/call?sync=true", "", stdin)
			if r.Code == http.StatusServiceUnavailable {
				return fmt.Errorf("server %d: %s", i, r.Body)
			}
			r.want(t, 200)
			if !bytes.Equal(r.Body, stdin) {
				t.Fatalf("through server %d: %d bytes back, want %d equal ones", i, len(r.Body), size)
			}
			return nil
		})
	}
	for i := 0; i < 3; i++ {
		// Every server applies the chunks (the wait only catches one that
		// never does); a stage entry is a chunk in base64 plus its key
		// and time, and none is larger.
		servertest.Eventually(t, time.Minute, func() error {
			if n := c.Server(i).LargestEntry(); n < fsm.MaxEntryPayload/2 {
				return fmt.Errorf("server %d has applied no chunk yet (largest entry %d bytes)", i, n)
			}
			return nil
		})
		if n := c.Server(i).LargestEntry(); n > fsm.MaxEntryPayload+4096 {
			t.Fatalf("server %d applied an entry of %d bytes; the bound is %d", i, n, fsm.MaxEntryPayload)
		}
	}
}

// TestStagingGivesUpWithItsSender: a call whose sender is gone before its
// large stdin is staged (a follower's forward that timed out) is not
// queued, and the error says so, so that a failure means "not queued".
func TestStagingGivesUpWithItsSender(t *testing.T) {
	c := servertest.NewCluster(t, 1, servertest.Options{Configure: func(_ int, cfg *server.Config) {
		cfg.MaxStdin = 3 << 20
	}})
	c.WaitForLeader()
	fn := createFn(t, c.Client(0), "f", "cat")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	id, err := c.Server(0).EnqueueAsLeader(ctx, fn.Owner+"/"+fn.Name, make([]byte, 2<<20))
	if err == nil || !strings.Contains(err.Error(), "not queued") {
		t.Fatalf("a call whose sender left: %v, want not queued", err)
	}
	if call, _ := c.Server(0).Store().Call(nil, id); call != nil {
		t.Fatalf("the call was queued: %+v", call)
	}
	// A small call under the same context is not staged and not queued either.
	if _, err := c.Server(0).EnqueueAsLeader(ctx, fn.Owner+"/"+fn.Name, []byte("x")); err == nil {
		t.Fatal("a call whose sender left was queued")
	}
}
