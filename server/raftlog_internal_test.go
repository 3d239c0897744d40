package server

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
)

// writeBoltLog leaves a raft.db as an older hyperfunc did: entries 1..n and
// a term and vote.
func writeBoltLog(t *testing.T, dir string, n int) {
	t.Helper()
	b, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(dir, boltLogFile)})
	if err != nil {
		t.Fatal(err)
	}
	var logs []*raft.Log
	for i := 1; i <= n; i++ {
		logs = append(logs, &raft.Log{Index: uint64(i), Term: 3, Type: raft.LogCommand, Data: bytes.Repeat([]byte{byte(i)}, 1000+i)})
	}
	if err := b.StoreLogs(logs); err != nil {
		t.Fatal(err)
	}
	if err := b.SetUint64([]byte("CurrentTerm"), 3); err != nil {
		t.Fatal(err)
	}
	if err := b.Set([]byte("LastVoteCand"), []byte("node-a")); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
}

func checkMigrated(t *testing.T, dir string, n int) {
	t.Helper()
	w, closeW, err := openLogStore(dir, 0, hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer closeW()
	if _, err := os.Stat(filepath.Join(dir, boltLogFile)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("raft.db still there after the move: %v", err)
	}
	first, _ := w.FirstIndex()
	last, _ := w.LastIndex()
	if first != 1 || last != uint64(n) {
		t.Fatalf("WAL holds [%d, %d], want [1, %d]", first, last, n)
	}
	for i := 1; i <= n; i++ {
		var l raft.Log
		if err := w.GetLog(uint64(i), &l); err != nil {
			t.Fatalf("entry %d: %v", i, err)
		}
		if l.Term != 3 || !bytes.Equal(l.Data, bytes.Repeat([]byte{byte(i)}, 1000+i)) {
			t.Fatalf("entry %d changed in the move", i)
		}
	}
	if term, err := w.GetUint64([]byte("CurrentTerm")); err != nil || term != 3 {
		t.Fatalf("CurrentTerm = %d, %v; want 3", term, err)
	}
	if cand, err := w.Get([]byte("LastVoteCand")); err != nil || string(cand) != "node-a" {
		t.Fatalf("LastVoteCand = %q, %v", cand, err)
	}
}

// A data dir from before raft-wal keeps its log, term and vote.
func TestLogStoreMovesRaftDB(t *testing.T) {
	dir := t.TempDir()
	writeBoltLog(t, dir, 300)
	checkMigrated(t, dir, 300)
	// And a second start reads the WAL alone.
	checkMigrated(t, dir, 300)
}

// A move that crashed part way (wal.migrating left, raft.db intact) starts
// over; one that crashed after the rename only removes raft.db.
func TestLogStoreMoveResumes(t *testing.T) {
	t.Run("copy interrupted", func(t *testing.T) {
		dir := t.TempDir()
		writeBoltLog(t, dir, 50)
		partial := filepath.Join(dir, walMigrateDir)
		if err := os.MkdirAll(partial, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(partial, "00000000000000000001-0000000000000001.wal"), []byte("torn"), 0o600); err != nil {
			t.Fatal(err)
		}
		checkMigrated(t, dir, 50)
		if _, err := os.Stat(partial); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("wal.migrating left behind: %v", err)
		}
	})
	t.Run("removal interrupted", func(t *testing.T) {
		dir := t.TempDir()
		writeBoltLog(t, dir, 50)
		if err := migrateBolt(dir, hclog.NewNullLogger()); err != nil {
			t.Fatal(err)
		}
		// The rename happened; raft.db is back as if its removal never ran.
		writeBoltLog(t, dir, 50)
		checkMigrated(t, dir, 50)
	})
}

// An empty data dir gets an empty WAL and no raft.db.
func TestLogStoreFresh(t *testing.T) {
	dir := t.TempDir()
	w, closeW, err := openLogStore(dir, 0, hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer closeW()
	if last, _ := w.LastIndex(); last != 0 {
		t.Fatalf("fresh WAL LastIndex = %d", last)
	}
	if logStoreBytes(dir) == 0 {
		t.Fatal("logStoreBytes = 0 for an open WAL (its meta file is on disk)")
	}
}

// A raft.db beside the WAL that holds another log was written by an older
// version after the move (a downgrade): the start is refused, with what to
// do, and neither log is touched.
func TestLogStoreRefusesDifferentRaftDB(t *testing.T) {
	dir := t.TempDir()
	writeBoltLog(t, dir, 5)
	checkMigrated(t, dir, 5)
	writeBoltLog(t, dir, 8) // the older version's own log, further on
	_, _, err := openLogStore(dir, 0, hclog.NewNullLogger())
	if err == nil || !strings.Contains(err.Error(), "downgrading is not supported") {
		t.Fatalf("a raft.db holding another log was not refused: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, boltLogFile)); err != nil {
		t.Fatalf("raft.db was touched: %v", err)
	}
	// The operator keeps the newer log: the WAL goes, raft.db moves in.
	if err := os.RemoveAll(filepath.Join(dir, walDir)); err != nil {
		t.Fatal(err)
	}
	checkMigrated(t, dir, 8)
}
