package server

import (
	"bytes"
	"fmt"
	"io"
	"math/rand"
	"os"
	"path/filepath"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	wal "github.com/hashicorp/raft-wal"
)

func historyEntry(i, term uint64) *raft.Log {
	return &raft.Log{Index: i, Term: term, Type: raft.LogCommand, Data: bytes.Repeat([]byte{byte(i), byte(term)}, 200+int(i%700))}
}

// copyDir copies src to dst, as a killed process leaves its files.
func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	if err := os.MkdirAll(dst, 0o700); err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if e.IsDir() {
			copyDir(t, filepath.Join(src, e.Name()), filepath.Join(dst, e.Name()))
			continue
		}
		in, err := os.Open(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out, err := os.Create(filepath.Join(dst, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(out, in)
		in.Close()
		out.Close()
	}
}

// Histories Raft gives its log store, drawn at random (seed 1, or
// HF_WAL_SEED): appends that fill 16 KiB segments, compaction from the
// head, a conflicting suffix cleared, a snapshot installed (everything
// deleted, the next append anywhere), restarts, and kills (the files copied
// as a killed process leaves them, a rotation perhaps under way). Every
// open succeeds, checkSegments refuses none of these, and the log reads
// back as the model says; a stop between a sealing append and its rotation
// (finishRotation) used to leave a log that refused every append.
func TestLogStoreHistories(t *testing.T) {
	seed := int64(1)
	if s := os.Getenv("HF_WAL_SEED"); s != "" { // another history
		fmt.Sscan(s, &seed)
	}
	rng := rand.New(rand.NewSource(seed))
	for round := 0; round < 8; round++ {
		root := t.TempDir()
		dir := filepath.Join(root, "raft")
		seg := 16 << 10
		w, closeW, err := openLogStore(dir, seg, hclog.NewNullLogger())
		if err != nil {
			t.Fatal(err)
		}
		terms := map[uint64]uint64{}
		var first, last uint64
		term := uint64(1)
		verify := func(w *wal.WAL, what string) {
			t.Helper()
			f, _ := w.FirstIndex()
			l, _ := w.LastIndex()
			if f != first || l != last {
				t.Fatalf("round %d %s: WAL [%d,%d], model [%d,%d]", round, what, f, l, first, last)
			}
			for i := first; i <= last && last > 0; i++ {
				var g raft.Log
				if err := w.GetLog(i, &g); err != nil {
					t.Fatalf("round %d %s: get %d: %v", round, what, i, err)
				}
				if g.Term != terms[i] || !bytes.Equal(g.Data, historyEntry(i, terms[i]).Data) {
					t.Fatalf("round %d %s: entry %d term %d want %d", round, what, i, g.Term, terms[i])
				}
			}
		}
		for step := 0; step < 200; step++ {
			op := rng.Intn(100)
			switch {
			case op < 55: // append a batch
				n := 1 + rng.Intn(40)
				start := last + 1
				if last == 0 && first == 0 && rng.Intn(2) == 0 {
					start = uint64(1 + rng.Intn(1000))
				}
				var ls []*raft.Log
				for i := start; i < start+uint64(n); i++ {
					ls = append(ls, historyEntry(i, term))
					terms[i] = term
				}
				if err := w.StoreLogs(ls); err != nil {
					t.Fatalf("round %d step %d store: %v", round, step, err)
				}
				if first == 0 {
					first = start
				}
				last = start + uint64(n) - 1
			case op < 68 && last > 0: // compaction from the head
				upto := first + uint64(rng.Int63n(int64(last-first+1)))
				if rng.Intn(5) == 0 {
					upto = last
				}
				if err := w.DeleteRange(first, upto); err != nil {
					t.Fatal(err)
				}
				if upto >= last {
					first, last = 0, 0
				} else {
					first = upto + 1
				}
			case op < 76 && last > 0 && last > first: // conflict
				from := first + 1 + uint64(rng.Int63n(int64(last-first)))
				if err := w.DeleteRange(from, last); err != nil {
					t.Fatal(err)
				}
				last = from - 1
				term++
			case op < 80 && last > 0: // snapshot install
				if err := w.DeleteRange(first, last); err != nil {
					t.Fatal(err)
				}
				first, last = 0, 0
				term++
			case op < 92: // restart
				if err := closeW(); err != nil {
					t.Fatal(err)
				}
				w, closeW, err = openLogStore(dir, seg, hclog.NewNullLogger())
				if err != nil {
					t.Fatalf("round %d step %d reopen: %v", round, step, err)
				}
				verify(w, "after restart")
			default: // kill: copy the files as a killed process leaves them
				cp := filepath.Join(root, fmt.Sprintf("kill%d", step))
				copyDir(t, dir, cp)
				w2, close2, err := openLogStore(cp, seg, hclog.NewNullLogger())
				if err != nil {
					t.Fatalf("round %d step %d open after kill: %v", round, step, err)
				}
				verify(w2, "after kill")
				close2()
				os.RemoveAll(cp)
			}
		}
		verify(w, "end")
		closeW()
	}
}
