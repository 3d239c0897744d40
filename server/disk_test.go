package server_test

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/hyperfunc/hyperfunc/api"
	"github.com/hyperfunc/hyperfunc/server"
	"github.com/hyperfunc/hyperfunc/server/servertest"
)

func quietConfig(t *testing.T, dir string) server.Config {
	return server.Config{
		DataDir: dir, HTTPAddr: "127.0.0.1:0", RaftAddr: "127.0.0.1:0", ClusterKey: servertest.ClusterKey,
		Executor: servertest.NewEngine().NewExecutor(), RaftTuning: servertest.ShortTimers,
		Logger: hclog.New(&hclog.LoggerOptions{Output: io.Discard}),
	}
}

// A data dir that cannot be a directory is refused by name before Raft
// opens anything.
func TestDataDirNotADirectory(t *testing.T) {
	f := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(f, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := server.New(quietConfig(t, f))
	if err == nil || !strings.Contains(err.Error(), f) {
		t.Fatalf("got %v, want an error naming %s", err, f)
	}
}

// A second agent on a data dir in use is refused at once, before it
// touches the state file or the Raft log (it used to delete the first
// one's state file, and could race it moving a raft.db); once the first
// stops, the dir opens again, in this process too.
func TestDataDirInUseRefused(t *testing.T) {
	dir := t.TempDir()
	s := startSingle(t, dir)
	state, _ := filepath.Glob(filepath.Join(dir, "state", "*"))
	before := map[string]os.FileInfo{}
	for _, p := range state {
		before[p], _ = os.Stat(p)
	}
	_, err := server.New(quietConfig(t, dir))
	if !errors.Is(err, server.ErrDataDirInUse) || !strings.Contains(err.Error(), dir) {
		t.Fatalf("second server on %s: %v, want ErrDataDirInUse naming the dir", dir, err)
	}
	for p, fi := range before {
		now, err := os.Stat(p)
		if err != nil || !os.SameFile(fi, now) {
			t.Fatalf("the refused server touched %s: %v", p, err)
		}
	}
	if err := s.Shutdown(false); err != nil {
		t.Fatal(err)
	}
	s2, err := server.New(quietConfig(t, dir))
	if err != nil {
		t.Fatalf("the dir after the first server stopped: %v", err)
	}
	if err := s2.Start(); err != nil {
		t.Fatal(err)
	}
	s2.Shutdown(false)
}

func TestCorruptNodeIDRefused(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "node-id"), []byte("not-a-uuid\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := server.New(quietConfig(t, dir))
	if err == nil || !strings.Contains(err.Error(), "corrupt") {
		t.Fatalf("got %v", err)
	}
}

// TestCorruptSnapshotRefused: a node whose newest snapshot is damaged says
// so at start and does not come up with bad state.
func TestCorruptSnapshotRefused(t *testing.T) {
	dir := t.TempDir()
	s := startSingle(t, dir)
	c, _ := api.NewClient(&api.Config{Address: s.HTTPAddr()})
	if _, err := c.Functions().Create(ctx(t), &api.FunctionSpec{Name: "f", Image: "busybox"}); err != nil {
		t.Fatal(err)
	}
	if err := s.Raft().Snapshot().Error(); err != nil {
		t.Fatal(err)
	}
	if err := s.Shutdown(false); err != nil {
		t.Fatal(err)
	}
	states, _ := filepath.Glob(filepath.Join(dir, "raft", "snapshots", "*", "state.bin"))
	if len(states) == 0 {
		t.Fatal("no snapshot written")
	}
	for _, p := range states {
		b, _ := os.ReadFile(p)
		copy(b, "GARBAGE")
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	s2, err := server.New(quietConfig(t, dir))
	if err != nil {
		t.Fatal(err)
	}
	err = s2.Start()
	if err == nil {
		s2.Shutdown(false)
		t.Fatal("a node with a corrupt snapshot started")
	}
	if !strings.Contains(err.Error(), "snapshot") {
		t.Fatalf("the error does not say what is wrong: %v", err)
	}
}

// startSingle starts a one-server cluster on dir and waits for it to lead.
func startSingle(t *testing.T, dir string) *server.Server {
	t.Helper()
	s, err := server.New(quietConfig(t, dir))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	waitLeader(t, s)
	return s
}

func waitLeader(t *testing.T, s *server.Server) {
	t.Helper()
	for i := 0; i < 3000 && s.Raft().State() != raft.Leader; i++ { // 60s: only a hang
		sleepShort()
	}
	if s.Raft().State() != raft.Leader {
		t.Fatal("no leader")
	}
}

func sleepShort() { time.Sleep(20 * time.Millisecond) }
