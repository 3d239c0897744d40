package cachestore

import (
	"bytes"
	"fmt"
	"testing"

	memdb "github.com/hashicorp/go-memdb"
)

func newDB(t *testing.T) *memdb.MemDB {
	t.Helper()
	db, err := memdb.NewMemDB(&memdb.DBSchema{Tables: Tables()})
	if err != nil {
		t.Fatal(err)
	}
	return db
}

// sumOutputs recomputes a function's output bytes from the rows present.
func sumOutputs(t *testing.T, txn *memdb.Txn, fn string) (int64, int64) {
	it, err := txn.Get(TableOutputs, IndexFunction+"_prefix", fn)
	if err != nil {
		t.Fatal(err)
	}
	var b, n int64
	for raw := it.Next(); raw != nil; raw = it.Next() {
		b += raw.(*Output).Size()
		n++
	}
	return b, n
}

// TestOutputCacheRotatesPastCap fills one function's output cache well past
// 50 MiB with 1 MiB outputs: the oldest rotate out first, the byte total
// never exceeds the cap and always equals the sum of what is stored.
func TestOutputCacheRotatesPastCap(t *testing.T) {
	db := newDB(t)
	const mib = 1 << 20
	var rotated []string
	for i := 0; i < 80; i++ {
		txn := db.Txn(true)
		o := &Output{CallID: fmt.Sprintf("c%03d", i), Function: "alice/f", Seq: uint64(i + 1), Data: bytes.Repeat([]byte{byte(i)}, mib)}
		r, err := PutOutput(txn, o, DefaultCap)
		if err != nil {
			t.Fatal(err)
		}
		rotated = append(rotated, r...)
		// A second function is never touched by the first one's rotation.
		if _, err := PutOutput(txn, &Output{CallID: fmt.Sprintf("g%03d", i), Function: "alice/g", Seq: uint64(i + 1), Data: []byte("x")}, DefaultCap); err != nil {
			t.Fatal(err)
		}
		u, _ := GetUsage(txn, KindOutput, "alice/f")
		sum, n := sumOutputs(t, txn, "alice/f")
		if u.Bytes > DefaultCap || u.Bytes != sum || u.Count != n {
			t.Fatalf("after %d: usage %+v, stored %d bytes in %d", i, u, sum, n)
		}
		txn.Commit()
	}
	kept := int(DefaultCap / (mib + OutputOverhead)) // 49: each output also counts its overhead
	gone := 80 - kept
	if len(rotated) != gone || rotated[0] != "c000" || rotated[gone-1] != fmt.Sprintf("c%03d", gone-1) {
		t.Fatalf("rotated %d, want %d, first %v", len(rotated), gone, rotated[:2])
	}
	txn := db.Txn(false)
	if o, _ := GetOutput(txn, nil, fmt.Sprintf("c%03d", gone-1)); o != nil {
		t.Fatal("rotated output still readable")
	}
	if o, _ := GetOutput(txn, nil, fmt.Sprintf("c%03d", gone)); o == nil || int(o.Data[0]) != gone {
		t.Fatal("newest outputs lost")
	}
	if u, _ := GetUsage(txn, KindOutput, "alice/g"); u.Count != 80 {
		t.Fatalf("other function's cache: %+v", u)
	}
}

// TestOutputCacheAtCap: exactly at the cap nothing rotates; one byte past it
// the oldest goes.
func TestOutputCacheAtCap(t *testing.T) {
	db := newDB(t)
	txn := db.Txn(true)
	const limit = 100 + 2*OutputOverhead
	if r, _ := PutOutput(txn, &Output{CallID: "a", Function: "f", Seq: 1, Data: make([]byte, 60)}, limit); len(r) != 0 {
		t.Fatal(r)
	}
	if r, _ := PutOutput(txn, &Output{CallID: "b", Function: "f", Seq: 2, Data: make([]byte, 40)}, limit); len(r) != 0 {
		t.Fatalf("at the cap: rotated %v", r)
	}
	// An empty output counts too: one more row is one past the cap.
	if r, _ := PutOutput(txn, &Output{CallID: "c", Function: "f", Seq: 3}, limit); len(r) != 1 || r[0] != "a" {
		t.Fatalf("one past the cap: rotated %v", r)
	}
	// An output larger than the whole cap rotates everything, itself too.
	r, _ := PutOutput(txn, &Output{CallID: "d", Function: "f", Seq: 4, Data: make([]byte, limit+1)}, limit)
	if len(r) != 3 || r[2] != "d" {
		t.Fatalf("oversized: rotated %v", r)
	}
	if u, _ := GetUsage(txn, KindOutput, "f"); u.Bytes != 0 || u.Count != 0 {
		t.Fatalf("usage %+v", u)
	}
}

func TestLogCacheRotatesPastCap(t *testing.T) {
	db := newDB(t)
	text := string(bytes.Repeat([]byte("y"), 4000))
	var total int64
	for i := 0; i < 16000; i++ { // ~64 MiB of entries
		txn := db.Txn(true)
		e := &LogEntry{Function: "alice/f", Seq: uint64(i + 1), CallID: "c", Kind: "FINISHED", Text: text}
		total += e.Size()
		if _, err := AppendLog(txn, e, DefaultCap); err != nil {
			t.Fatal(err)
		}
		txn.Commit()
	}
	txn := db.Txn(false)
	u, _ := GetUsage(txn, KindLog, "alice/f")
	all, _ := Logs(txn, nil, "alice/f", 0, 0)
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
	tail, _ := Logs(txn, nil, "alice/f", 0, 3)
	if len(tail) != 3 || tail[2].Seq != 16000 || tail[0].Seq != 15998 {
		t.Fatalf("tail: %d entries", len(tail))
	}
	after, _ := Logs(txn, nil, "alice/f", 15990, 0)
	if len(after) != 10 {
		t.Fatalf("after: %d", len(after))
	}
}

func TestDeleteFunctionDropsCaches(t *testing.T) {
	db := newDB(t)
	txn := db.Txn(true)
	PutOutput(txn, &Output{CallID: "a", Function: "f", Seq: 1, Data: []byte("x")}, DefaultCap)
	AppendLog(txn, &LogEntry{Function: "f", Seq: 1, Kind: "CALL"}, DefaultCap)
	PutOutput(txn, &Output{CallID: "b", Function: "f2", Seq: 1, Data: []byte("x")}, DefaultCap)
	if err := DeleteFunction(txn, "f"); err != nil {
		t.Fatal(err)
	}
	if o, _ := GetOutput(txn, nil, "a"); o != nil {
		t.Fatal("output survived")
	}
	if o, _ := GetOutput(txn, nil, "b"); o == nil {
		t.Fatal("the function whose name starts the same lost its output")
	}
	if u, _ := GetUsage(txn, KindLog, "f"); u.Count != 0 {
		t.Fatal("log usage survived")
	}
}
