package server

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	walfs "github.com/hashicorp/raft-wal/fs"
	"github.com/hashicorp/raft-wal/metadb"
	"github.com/hashicorp/raft-wal/segment"
	"github.com/hashicorp/raft-wal/types"
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

// A follower that clears a log suffix (raft's "clearing log suffix", a
// leader of a newer term overwriting entries it never committed) and is
// then restarted reads its whole log again. raft-wal before v0.4.1 marked
// the tail segment sealed on a tail truncation without writing its index
// block, and the next start panicked in raft.NewRaft with "sealed segment
// has no index block" (hashicorp/raft-wal#31): a node killed in the chaos
// suite after such a truncation could never start again.
func TestLogStoreTailTruncateSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	entry := func(i, term uint64) *raft.Log {
		return &raft.Log{Index: i, Term: term, Type: raft.LogCommand, Data: bytes.Repeat([]byte{byte(i)}, 100+int(i))}
	}
	w, closeW, err := openLogStore(dir, 0, hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	var logs []*raft.Log
	for i := uint64(1); i <= 519; i++ {
		logs = append(logs, entry(i, 3))
	}
	if err := w.StoreLogs(logs); err != nil {
		t.Fatal(err)
	}
	// As raft does when an AppendEntries from a newer leader conflicts.
	if err := w.DeleteRange(515, 519); err != nil {
		t.Fatal(err)
	}
	if err := w.StoreLogs([]*raft.Log{entry(515, 4), entry(516, 4)}); err != nil {
		t.Fatal(err)
	}
	if err := closeW(); err != nil {
		t.Fatal(err)
	}

	w, closeW, err = openLogStore(dir, 0, hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer closeW()
	first, _ := w.FirstIndex()
	last, _ := w.LastIndex()
	if first != 1 || last != 516 {
		t.Fatalf("WAL holds [%d, %d] after the restart, want [1, 516]", first, last)
	}
	for i := uint64(1); i <= 516; i++ {
		var l raft.Log
		if err := w.GetLog(i, &l); err != nil {
			t.Fatalf("entry %d after the restart: %v", i, err)
		}
		want := uint64(3)
		if i >= 515 {
			want = 4
		}
		if l.Term != want || !bytes.Equal(l.Data, entry(i, want).Data) {
			t.Fatalf("entry %d: term %d, want %d (or its data changed)", i, l.Term, want)
		}
	}
}

// A data dir whose WAL has a segment that cannot be read (as raft-wal
// before v0.4.1 left one after a tail truncation) is refused at open with
// what to do, where raft.NewRaft would panic at its first read; an intact
// WAL of several segments opens.
func TestLogStoreDamagedSegmentRefused(t *testing.T) {
	dir := t.TempDir()
	w, closeW, err := openLogStore(dir, 64<<10, hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	for i := uint64(1); i <= 300; i++ {
		l := &raft.Log{Index: i, Term: 2, Type: raft.LogCommand, Data: bytes.Repeat([]byte{byte(i)}, 1000)}
		if err := w.StoreLogs([]*raft.Log{l}); err != nil {
			t.Fatal(err)
		}
	}
	if err := closeW(); err != nil {
		t.Fatal(err)
	}
	segs, _ := filepath.Glob(filepath.Join(dir, walDir, "*.wal"))
	if len(segs) < 3 {
		t.Fatalf("%d segments, want several sealed ones and a tail", len(segs))
	}
	_, closeW, err = openLogStore(dir, 64<<10, hclog.NewNullLogger())
	if err != nil {
		t.Fatalf("an intact WAL of %d segments: %v", len(segs), err)
	}
	closeW()

	// The second segment (sealed: a later one follows) loses its index.
	fi, err := os.Stat(segs[1])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(segs[1], fi.Size()/2); err != nil {
		t.Fatal(err)
	}
	_, _, err = openLogStore(dir, 64<<10, hclog.NewNullLogger())
	if err == nil {
		t.Fatal("a WAL with a damaged segment opened")
	}
	for _, want := range []string{filepath.Base(segs[1]), "damaged", "empty data dir"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not say %q: %v", want, err)
		}
	}
}

// A server stopped (or killed) right after an append that filled the tail
// segment: the segment file is sealed, but raft-wal's background rotation
// never recorded the seal nor created the next segment. raft-wal recovers
// such a file as the tail and refuses every append to it ("segment is
// sealed") at every start; the open finishes the rotation instead, and the
// log takes appends and reads back whole, here and after another restart.
func TestLogStoreSealedTailAfterStop(t *testing.T) {
	dir := t.TempDir()
	sealedTailStopped(t, dir)
	for restart := 0; restart < 2; restart++ {
		var log hclog.Logger // none at the first open, as some callers pass
		if restart > 0 {
			log = hclog.NewNullLogger()
		}
		w, closeW, err := openLogStore(dir, 16<<10, log)
		if err != nil {
			t.Fatalf("open %d: %v", restart, err)
		}
		next := uint64(41 + restart)
		if err := w.StoreLogs([]*raft.Log{sealedTailEntry(next)}); err != nil {
			closeW()
			t.Fatalf("append %d after the restart: %v", next, err)
		}
		for i := uint64(1); i <= next; i++ {
			var l raft.Log
			if err := w.GetLog(i, &l); err != nil || !bytes.Equal(l.Data, sealedTailEntry(i).Data) {
				closeW()
				t.Fatalf("entry %d after the restart: %v", i, err)
			}
		}
		if err := closeW(); err != nil {
			t.Fatal(err)
		}
	}
}

// A sealed tail whose index block does not list the entries its commits
// hold (here: the sealing commit is damaged, so recovery goes back to the
// commit before it, and the block's entry for one of those is wrong) is
// refused at open with what to do, not recorded as sealed: its entries
// would be read at the offsets the block gives.
func TestLogStoreSealedTailBadIndexRefused(t *testing.T) {
	dir := t.TempDir()
	tail := sealedTailStopped(t, dir)
	walPath := filepath.Join(dir, walDir)
	sw, err := segment.NewFiler(walPath, walfs.New()).RecoverTail(tail)
	if err != nil {
		t.Fatal(err)
	}
	sealed, indexStart, err := sw.Sealed()
	sw.Close()
	if err != nil || !sealed {
		t.Fatalf("tail sealed %v, %v", sealed, err)
	}
	f, err := os.OpenFile(filepath.Join(walPath, segment.FileName(tail)), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	// Entry 2's offset in the block (entry 2 is in the first commit).
	if _, err := f.WriteAt([]byte{0xff, 0xff, 0xff, 0x00}, int64(indexStart)+4); err != nil {
		t.Fatal(err)
	}
	f.Close()
	_, _, err = openLogStore(dir, 16<<10, hclog.NewNullLogger())
	if err == nil {
		t.Fatal("a sealed tail with a damaged index block opened")
	}
	for _, want := range []string{segment.FileName(tail), "damaged", "empty data dir"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not say %q: %v", want, err)
		}
	}
}

func sealedTailEntry(i uint64) *raft.Log {
	return &raft.Log{Index: i, Term: 2, Type: raft.LogCommand, Data: bytes.Repeat([]byte{byte(i)}, 1000)}
}

// sealedTailStopped leaves in dir a WAL of entries 1..40 (two appends: 1..5,
// then 6..40 that seals the segment) whose first segment is sealed and
// recorded as the unsealed tail, with no segment after it, as a stop
// between the sealing append and its rotation leaves it; it returns that
// segment's info.
func sealedTailStopped(t *testing.T, dir string) types.SegmentInfo {
	t.Helper()
	walPath := filepath.Join(dir, walDir)
	entry := sealedTailEntry
	w, closeW, err := openLogStore(dir, 16<<10, hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range [][2]uint64{{1, 5}, {6, 40}} { // 40 KB: past the 16 KiB segment
		var logs []*raft.Log
		for i := r[0]; i <= r[1]; i++ {
			logs = append(logs, entry(i))
		}
		if err := w.StoreLogs(logs); err != nil {
			t.Fatal(err)
		}
	}
	if err := closeW(); err != nil {
		t.Fatal(err)
	}
	// Whether the Close came before the rotation or after it, leave the
	// meta store as a stop before the rotation does: the sealed file is
	// the unsealed tail, and no segment follows it.
	meta := &metadb.BoltMetaDB{}
	ps, err := meta.Load(walPath)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(ps.Segments); n == 2 && ps.Segments[1].BaseIndex == 41 {
		ps.Segments = ps.Segments[:1]
		ps.Segments[0].SealTime = time.Time{}
		ps.Segments[0].IndexStart = 0
		ps.Segments[0].MaxIndex = 0
		if err := meta.CommitState(ps); err != nil {
			t.Fatal(err)
		}
	}
	if len(ps.Segments) != 1 || !ps.Segments[0].SealTime.IsZero() {
		t.Fatalf("meta store: %+v, want the first segment alone as the tail", ps.Segments)
	}
	if err := meta.Close(); err != nil {
		t.Fatal(err)
	}
	return ps.Segments[0]
}
