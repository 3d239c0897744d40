package cachestore

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	memdb "github.com/hashicorp/go-memdb"
)

// harness is one state store's two halves, as the FSM holds them.
type harness struct {
	t    *testing.T
	mem  *memdb.MemDB
	disk *DB
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	mem, err := memdb.NewMemDB(&memdb.DBSchema{Tables: Tables()})
	if err != nil {
		t.Fatal(err)
	}
	disk, err := Open(filepath.Join(t.TempDir(), "caches.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { disk.Close() })
	return &harness{t: t, mem: mem, disk: disk}
}

// write runs fn in one apply's write and commits it.
func (h *harness) write(fn func(*Txn)) {
	h.t.Helper()
	txn := NewTxn(h.mem, h.disk)
	defer txn.Abort()
	fn(txn)
	if err := txn.Commit(); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) read() *Read {
	h.t.Helper()
	r, err := NewRead(h.mem, h.disk)
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(r.Close)
	return r
}

func (h *harness) put(txn *Txn, o *Output, limit int64) []string {
	h.t.Helper()
	r, err := PutOutput(txn, o, limit)
	if err != nil {
		h.t.Fatal(err)
	}
	return r
}

// sumOutputs recomputes a function's output bytes from the records on disk.
func (h *harness) sumOutputs(fn string) (int64, int64) {
	h.t.Helper()
	s, err := h.disk.Snapshot()
	if err != nil {
		h.t.Fatal(err)
	}
	defer s.Release()
	var b, n int64
	if err := s.Each(func(k RecordKind, rec []byte) error {
		if k == RecordOutput {
			o, err := DecodeOutput(rec, nil)
			if err != nil {
				return err
			}
			if o.Function == fn {
				b += o.Size()
				n++
			}
		}
		return nil
	}); err != nil {
		h.t.Fatal(err)
	}
	return b, n
}

// TestOutputCacheRotatesPastCap fills one function's output cache well past
// 50 MiB with 1 MiB outputs: the cap means what a user reads (it holds 50
// of them), the oldest rotate out first, the byte total never exceeds the
// cap and always equals the sum of what is stored.
func TestOutputCacheRotatesPastCap(t *testing.T) {
	h := newHarness(t)
	const mib = 1 << 20
	var rotated []string
	for i := 0; i < 80; i++ {
		h.write(func(txn *Txn) {
			o := &Output{CallID: fmt.Sprintf("c%03d", i), Function: "alice/f", Seq: uint64(i + 1), Data: bytes.Repeat([]byte{byte(i)}, mib)}
			rotated = append(rotated, h.put(txn, o, DefaultCap)...)
			// A second function is never touched by the first one's rotation.
			h.put(txn, &Output{CallID: fmt.Sprintf("g%03d", i), Function: "alice/g", Seq: uint64(i + 1), Data: []byte("x")}, DefaultCap)
		})
		u, _ := GetUsage(h.mem.Txn(false), KindOutput, "alice/f")
		sum, n := h.sumOutputs("alice/f")
		if u.Bytes > DefaultCap || u.Bytes != sum || u.Count != n {
			t.Fatalf("after %d: usage %+v, stored %d bytes in %d", i, u, sum, n)
		}
	}
	const kept = 50
	gone := 80 - kept
	if len(rotated) != gone || rotated[0] != "c000" || rotated[gone-1] != fmt.Sprintf("c%03d", gone-1) {
		t.Fatalf("rotated %d, want %d, first %v", len(rotated), gone, rotated[:2])
	}
	r := h.read()
	if o, _ := GetOutput(r, nil, fmt.Sprintf("c%03d", gone-1)); o != nil {
		t.Fatal("rotated output still readable")
	}
	if o, _ := GetOutput(r, nil, fmt.Sprintf("c%03d", gone)); o == nil || int(o.Data[0]) != gone || len(o.Data) != mib {
		t.Fatal("newest outputs lost")
	}
	if u, _ := GetUsage(r.Mem, KindOutput, "alice/g"); u.Count != 80 {
		t.Fatalf("other function's cache: %+v", u)
	}
}

// TestOutputCacheAtCap: exactly at the cap nothing rotates; one byte past it
// the oldest goes; an output larger than the cap rotates itself out.
func TestOutputCacheAtCap(t *testing.T) {
	h := newHarness(t)
	const limit = 100
	h.write(func(txn *Txn) {
		if r := h.put(txn, &Output{CallID: "a", Function: "f", Seq: 1, Data: make([]byte, 60)}, limit); len(r) != 0 {
			t.Fatal(r)
		}
		if r := h.put(txn, &Output{CallID: "b", Function: "f", Seq: 2, Data: make([]byte, 40)}, limit); len(r) != 0 {
			t.Fatalf("at the cap: rotated %v", r)
		}
		// An empty output counts no bytes: still at the cap.
		if r := h.put(txn, &Output{CallID: "c", Function: "f", Seq: 3}, limit); len(r) != 0 {
			t.Fatalf("empty output at the cap: rotated %v", r)
		}
		if r := h.put(txn, &Output{CallID: "d", Function: "f", Seq: 4, Data: []byte("x")}, limit); len(r) != 1 || r[0] != "a" {
			t.Fatalf("one past the cap: rotated %v", r)
		}
		// An output larger than the whole cap rotates everything, itself too.
		r := h.put(txn, &Output{CallID: "e", Function: "f", Seq: 5, Data: make([]byte, limit+1)}, limit)
		if len(r) != 4 || r[3] != "e" {
			t.Fatalf("oversized: rotated %v", r)
		}
		if u, _ := GetUsage(txn.Txn, KindOutput, "f"); u.Bytes != 0 || u.Count != 0 {
			t.Fatalf("usage %+v", u)
		}
	})
}

// TestOutputCacheEntryBound: MaxEntries empty outputs fit; one more rotates
// the oldest, so empty outputs cannot grow a cache without bound.
func TestOutputCacheEntryBound(t *testing.T) {
	h := newHarness(t)
	h.write(func(txn *Txn) {
		for i := 1; i <= MaxEntries; i++ {
			if r := h.put(txn, &Output{CallID: fmt.Sprint(i), Function: "f", Seq: uint64(i)}, DefaultCap); len(r) != 0 {
				t.Fatalf("entry %d of %d rotated %v", i, MaxEntries, r)
			}
		}
		r := h.put(txn, &Output{CallID: "last", Function: "f", Seq: MaxEntries + 1}, DefaultCap)
		if len(r) != 1 || r[0] != "1" {
			t.Fatalf("one past the entry bound: rotated %v", r)
		}
		if u, _ := GetUsage(txn.Txn, KindOutput, "f"); u.Count != MaxEntries {
			t.Fatalf("usage %+v", u)
		}
	})
}

func TestLogCacheRotatesPastCap(t *testing.T) {
	h := newHarness(t)
	text := string(bytes.Repeat([]byte("y"), 4000))
	var total int64
	for i := 0; i < 16000; i += 100 { // ~64 MiB of entries
		h.write(func(txn *Txn) {
			for j := i; j < i+100; j++ {
				e := &LogEntry{Function: "alice/f", Seq: uint64(j + 1), CallID: "c", Kind: "FINISHED", Text: text}
				total += e.Size()
				if _, err := AppendLog(txn, e, DefaultCap); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
	r := h.read()
	u, _ := GetUsage(r.Mem, KindLog, "alice/f")
	all, _ := Logs(r, nil, "alice/f", 0, 0)
	var sum int64
	for _, e := range all {
		sum += e.Size()
	}
	if total <= DefaultCap || u.Bytes > DefaultCap || u.Bytes != sum || int(u.Count) != len(all) {
		t.Fatalf("wrote %d, usage %+v, stored %d in %d", total, u, sum, len(all))
	}
	if all[0].Seq == 1 || all[len(all)-1].Seq != 16000 {
		t.Fatalf("kept %d..%d: the oldest must go first", all[0].Seq, all[len(all)-1].Seq)
	}
	tail, _ := Logs(r, nil, "alice/f", 0, 3)
	if len(tail) != 3 || tail[2].Seq != 16000 || tail[0].Seq != 15998 {
		t.Fatalf("tail: %d entries", len(tail))
	}
	after, _ := Logs(r, nil, "alice/f", 15990, 0)
	if len(after) != 10 {
		t.Fatalf("after: %d", len(after))
	}
}

// TestLogWatchFires: a reader blocked on a function's log wakes when an
// entry is appended, and not for another function's (with entries of its
// own: a watch on a row that does not exist yet is memdb's coarser one).
func TestLogWatchFires(t *testing.T) {
	h := newHarness(t)
	h.write(func(txn *Txn) { AppendLog(txn, &LogEntry{Function: "g", Seq: 1, Kind: "CALL"}, DefaultCap) })
	ws := memdb.NewWatchSet()
	if _, err := Logs(h.read(), ws, "f", 0, 0); err != nil {
		t.Fatal(err)
	}
	other := memdb.NewWatchSet()
	Logs(h.read(), other, "g", 0, 0)
	h.write(func(txn *Txn) { AppendLog(txn, &LogEntry{Function: "f", Seq: 1, Kind: "CALL"}, DefaultCap) })
	if !closed(ws) {
		t.Fatal("the log's watch did not fire on an append")
	}
	if closed(other) {
		t.Fatal("another function's watch fired")
	}
}

func closed(ws memdb.WatchSet) bool {
	for ch := range ws {
		select {
		case <-ch:
			return true
		default:
		}
	}
	return false
}

func TestDeleteFunctionDropsCaches(t *testing.T) {
	h := newHarness(t)
	h.write(func(txn *Txn) {
		h.put(txn, &Output{CallID: "a", Function: "f", Seq: 1, Data: []byte("x")}, DefaultCap)
		PutEnded(txn, "f", 1, "a", []byte("rec-a"))
		AppendLog(txn, &LogEntry{Function: "f", Seq: 1, Kind: "CALL"}, DefaultCap)
		h.put(txn, &Output{CallID: "b", Function: "f2", Seq: 1, Data: []byte("x")}, DefaultCap)
		PutEnded(txn, "f2", 1, "b", []byte("rec-b"))
	})
	h.write(func(txn *Txn) {
		if err := DeleteFunction(txn, "f"); err != nil {
			t.Fatal(err)
		}
	})
	r := h.read()
	if o, _ := GetOutput(r, nil, "a"); o != nil {
		t.Fatal("output survived")
	}
	if rec, _ := EndedRead(r, "a"); rec != nil {
		t.Fatal("ended call survived")
	}
	if _, _, ok := lookupID(r.disk, "a"); ok {
		t.Fatal("the call's ID entry survived")
	}
	if o, _ := GetOutput(r, nil, "b"); o == nil {
		t.Fatal("the function whose name starts the same lost its output")
	}
	if rec, _ := EndedRead(r, "b"); string(rec) != "rec-b" {
		t.Fatalf("other function's ended call: %q", rec)
	}
	if u, _ := GetUsage(r.Mem, KindLog, "f"); u.Count != 0 {
		t.Fatal("log usage survived")
	}
}

func TestEndedCalls(t *testing.T) {
	h := newHarness(t)
	h.write(func(txn *Txn) {
		for i := 5; i >= 1; i-- { // out of order: kept by sequence number
			PutEnded(txn, "f", uint64(i), fmt.Sprintf("c%d", i), []byte(fmt.Sprintf("r%d", i)))
		}
		PutEnded(txn, "f", 3, "c3", []byte("r3 updated"))
	})
	h.write(func(txn *Txn) {
		if err := DeleteEnded(txn, "c2"); err != nil {
			t.Fatal(err)
		}
		if rec, _ := Ended(txn, "c3"); string(rec) != "r3 updated" {
			t.Fatalf("c3: %q", rec)
		}
	})
	recs, err := EndedOfFunction(h.read(), "f", 1, 2)
	if err != nil || len(recs) != 2 || string(recs[0]) != "r3 updated" || string(recs[1]) != "r4" {
		t.Fatalf("after 1, 2 of them: %q %v", recs, err)
	}
	if rec, _ := EndedRead(h.read(), "c2"); rec != nil {
		t.Fatal("deleted call still there")
	}
}

// TestSnapshotLoads: what a snapshot streams, a loader puts back, with the
// same records and usage counted anew.
func TestSnapshotLoads(t *testing.T) {
	a := newHarness(t)
	a.write(func(txn *Txn) {
		for i := 1; i <= 30; i++ {
			fn := fmt.Sprintf("f%d", i%3)
			a.put(txn, &Output{CallID: fmt.Sprint(i), Function: fn, Seq: uint64(i), Data: bytes.Repeat([]byte{1}, i)}, 200)
			PutEnded(txn, fn, uint64(i), fmt.Sprint(i), []byte{byte(i)})
			AppendLog(txn, &LogEntry{Function: fn, Seq: uint64(i), CallID: fmt.Sprint(i), Kind: "FINISHED", Text: "t"}, DefaultCap)
		}
	})
	b := newHarness(t)
	snap, err := a.disk.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Release()
	mtx := b.mem.Txn(true)
	load := NewLoader(b.disk, mtx)
	var n int
	err = snap.Each(func(k RecordKind, rec []byte) error {
		n++
		switch k {
		case RecordOutput:
			o, err := DecodeOutput(rec, nil)
			if err != nil {
				return err
			}
			return load.Output(o)
		case RecordLog:
			e, err := DecodeLog(rec, nil)
			if err != nil {
				return err
			}
			return load.Log(e)
		default:
			i := int(rec[0])
			return load.Ended(fmt.Sprintf("f%d", i%3), uint64(i), fmt.Sprint(i), append([]byte(nil), rec...))
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := load.Close(); err != nil {
		t.Fatal(err)
	}
	mtx.Commit()
	if n < 60 {
		t.Fatalf("snapshot had %d records", n)
	}
	ra, rb := a.read(), b.read()
	for _, fn := range []string{"f0", "f1", "f2"} {
		for _, k := range []Kind{KindOutput, KindLog} {
			ua, _ := GetUsage(ra.Mem, k, fn)
			ub, _ := GetUsage(rb.Mem, k, fn)
			if ua != ub {
				t.Fatalf("%s %s: usage %+v, restored %+v", fn, k, ua, ub)
			}
		}
	}
	for i := 1; i <= 30; i++ {
		oa, _ := GetOutput(ra, nil, fmt.Sprint(i))
		ob, _ := GetOutput(rb, nil, fmt.Sprint(i))
		if (oa == nil) != (ob == nil) || (oa != nil && !bytes.Equal(oa.Data, ob.Data)) {
			t.Fatalf("output %d differs", i)
		}
		ea, _ := EndedRead(ra, fmt.Sprint(i))
		eb, _ := EndedRead(rb, fmt.Sprint(i))
		if !bytes.Equal(ea, eb) || ea == nil {
			t.Fatalf("ended call %d: %v, restored %v", i, ea, eb)
		}
	}
}

// TestOpenStartsEmpty: a file a previous process left is not trusted.
func TestOpenStartsEmpty(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.db")
	h := newHarness(t)
	d, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	h.disk = d
	h.write(func(txn *Txn) { PutEnded(txn, "f", 1, "c", []byte("r")) })
	d.bolt.Close() // a crash: the file stays
	d2, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer d2.Close()
	r, err := NewRead(h.mem, d2)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if rec, _ := EndedRead(r, "c"); rec != nil {
		t.Fatal("a record of the previous process survived Open")
	}
}

// TestTrim: after a snapshot read every output, Trim hands the file's pages
// back (RssFile drops), and the data reads back the same after it.
func TestTrim(t *testing.T) {
	h := newHarness(t)
	data := bytes.Repeat([]byte("t"), 1<<20)
	h.write(func(txn *Txn) {
		for i := 0; i < 32; i++ {
			h.put(txn, &Output{CallID: fmt.Sprint(i), Function: "f", Seq: uint64(i + 1), Data: data}, DefaultCap)
		}
	})
	rssFile := func() int64 {
		b, err := os.ReadFile("/proc/self/status")
		if err != nil {
			t.Skipf("no /proc: %v", err)
		}
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "RssFile:"); ok {
				n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
				return n << 10
			}
		}
		t.Skip("no RssFile in /proc/self/status")
		return 0
	}
	if r, err := mappings(h.disk.Path()); err != nil || len(r) == 0 {
		t.Fatalf("the file's mapping is not in /proc/self/maps: %v %v", r, err)
	}
	snap, _ := h.disk.Snapshot()
	var sum int
	snap.Each(func(_ RecordKind, rec []byte) error {
		for _, b := range rec {
			sum += int(b)
		}
		return nil
	})
	snap.Release()
	before := rssFile()
	if err := h.disk.Trim(); err != nil {
		t.Fatal(err)
	}
	after := rssFile()
	if before-after < 16<<20 {
		t.Fatalf("RssFile %d MiB before the trim, %d after: the 32 MiB read were not handed back", before>>20, after>>20)
	}
	if o, _ := GetOutput(h.read(), nil, "7"); o == nil || !bytes.Equal(o.Data, data) {
		t.Fatal("an output reads back differently after the trim")
	}
}

// Commits count the bytes they wrote until the next Trim, which the server
// uses to trim after heavy writes and not only on its clock.
func TestWrittenSinceTrim(t *testing.T) {
	h := newHarness(t)
	if n := h.disk.WrittenSinceTrim(); n != 0 {
		t.Fatalf("a new store has written %d bytes", n)
	}
	h.write(func(txn *Txn) {
		h.put(txn, &Output{CallID: "a", Function: "f", Seq: 1, Data: bytes.Repeat([]byte("w"), 1<<20)}, DefaultCap)
	})
	if n := h.disk.WrittenSinceTrim(); n < 1<<20 {
		t.Fatalf("after a 1 MiB output, WrittenSinceTrim = %d, want >= 1 MiB", n)
	}
	if err := h.disk.Trim(); err != nil {
		t.Fatal(err)
	}
	if n := h.disk.WrittenSinceTrim(); n != 0 {
		t.Fatalf("after Trim, WrittenSinceTrim = %d", n)
	}
}
