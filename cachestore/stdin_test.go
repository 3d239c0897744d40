package cachestore

import "testing"

// onDisk reports whether a call's stdin is in the file's bucket.
func (h *harness) onDisk(callID string) bool {
	h.t.Helper()
	r := h.read()
	return r.disk.Bucket(bucketStdin).Get([]byte(callID)) != nil
}

// TestHeldStdinBound: stdin is kept in memory while all of it fits in
// heldMax (a stdin that reaches it exactly fits), goes to the file past
// it, and the room comes back when a held stdin is dropped. Reads and
// snapshots find it in either place.
func TestHeldStdinBound(t *testing.T) {
	h := newHarness(t)
	h.disk.heldMax = 10
	h.write(func(txn *Txn) {
		if err := PutStdin(txn, "a", []byte("0123456")); err != nil { // 7
			t.Fatal(err)
		}
		if err := PutStdin(txn, "b", []byte("789")); err != nil { // 10: at the bound
			t.Fatal(err)
		}
	})
	if got := h.disk.HeldStdin(); got != 10 || h.onDisk("a") || h.onDisk("b") {
		t.Fatalf("at the bound: held %d, a on disk %v, b on disk %v; want 10 in memory", got, h.onDisk("a"), h.onDisk("b"))
	}
	h.write(func(txn *Txn) {
		if err := PutStdin(txn, "c", []byte("x")); err != nil { // 11: past it
			t.Fatal(err)
		}
	})
	if got := h.disk.HeldStdin(); got != 10 || !h.onDisk("c") {
		t.Fatalf("past the bound: held %d, c on disk %v; want 10 held and c on disk", got, h.onDisk("c"))
	}
	snap, err := h.disk.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	mem := h.mem.Txn(false)
	r := h.read()
	for id, want := range map[string]string{"a": "0123456", "b": "789", "c": "x"} {
		if got := Stdin(r, id); string(got) != want {
			t.Fatalf("read %s: %q, want %q", id, got, want)
		}
		if got := snap.Stdin(mem, id); string(got) != want {
			t.Fatalf("snapshot %s: %q, want %q", id, got, want)
		}
	}
	h.write(func(txn *Txn) {
		for _, id := range []string{"a", "c"} {
			if err := DeleteStdin(txn, id); err != nil {
				t.Fatal(err)
			}
		}
		if err := PutStdin(txn, "d", []byte("abcdefg")); err != nil { // 3 + 7: fits again
			t.Fatal(err)
		}
	})
	if got := h.disk.HeldStdin(); got != 10 || h.onDisk("c") || h.onDisk("d") {
		t.Fatalf("after deletes: held %d, c on disk %v, d on disk %v; want 10 held, neither on disk", got, h.onDisk("c"), h.onDisk("d"))
	}
	r = h.read()
	if Stdin(r, "a") != nil || Stdin(r, "c") != nil || string(Stdin(r, "d")) != "abcdefg" {
		t.Fatalf("after deletes: a %q c %q d %q", Stdin(r, "a"), Stdin(r, "c"), Stdin(r, "d"))
	}
	// The snapshot still reads what it saw.
	if string(snap.Stdin(mem, "a")) != "0123456" || string(snap.Stdin(mem, "c")) != "x" {
		t.Fatal("the snapshot lost stdin deleted after it")
	}
	snap.Release()
}

// TestHeldStdinAbort: an aborted write gives its held bytes back.
func TestHeldStdinAbort(t *testing.T) {
	h := newHarness(t)
	txn := NewTxn(h.mem, h.disk)
	if err := PutStdin(txn, "a", []byte("abc")); err != nil {
		t.Fatal(err)
	}
	txn.Abort()
	if got := h.disk.HeldStdin(); got != 0 {
		t.Fatalf("held %d after an abort, want 0", got)
	}
	if got := Stdin(h.read(), "a"); got != nil {
		t.Fatalf("aborted stdin readable: %q", got)
	}
}
