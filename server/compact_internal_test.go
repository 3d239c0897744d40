package server

import (
	"testing"

	"github.com/hashicorp/raft"
)

// TestTrailingLogs: the entries kept behind a snapshot hold about the byte
// budget at the mean entry size, within Raft's default and a floor.
func TestTrailingLogs(t *testing.T) {
	for _, c := range []struct {
		bytes, entries, keep int64
		want                 uint64
	}{
		{0, 0, 1 << 20, maxTrailingLogs},                 // nothing applied: Raft's default
		{100 << 10, 100, 10 << 20, maxTrailingLogs},      // 1 KiB entries: 10,240 hold exactly 10 MiB
		{100 << 10, 100, 10<<20 + 1024, maxTrailingLogs}, // one entry past the default: capped
		{100 << 20, 100, 64 << 20, 64},                   // 1 MiB entries: 64 of them
		{100 << 20, 100, 32 << 20, minTrailingLogs},      // 32 would be below the floor
		{1 << 30, 1, 1 << 20, minTrailingLogs},
	} {
		if got := trailingLogs(c.bytes, c.entries, c.keep); got != c.want {
			t.Errorf("trailingLogs(%d, %d, %d) = %d, want %d", c.bytes, c.entries, c.keep, got, c.want)
		}
	}
}

// TestStableStoreAfterClose: a term write that races the server's
// shutdown (a heartbeat Raft's Shutdown did not wait for) is dropped, not
// an error Raft would panic on; before Close writes go through.
func TestStableStoreAfterClose(t *testing.T) {
	mem := raft.NewInmemStore()
	closed := false
	s := &stableStore{StableStore: mem, close: func() error { closed = true; return nil }}
	if err := s.SetUint64([]byte("CurrentTerm"), 3); err != nil {
		t.Fatal(err)
	}
	if v, _ := mem.GetUint64([]byte("CurrentTerm")); v != 3 {
		t.Fatalf("before close: term %d, want 3", v)
	}
	if err := s.Close(); err != nil || !closed {
		t.Fatalf("close: %v, closed %v", err, closed)
	}
	if err := s.SetUint64([]byte("CurrentTerm"), 4); err != nil {
		t.Fatalf("a term write after close: %v", err)
	}
	if err := s.Set([]byte("k"), []byte("v")); err != nil {
		t.Fatalf("a write after close: %v", err)
	}
	if v, _ := mem.GetUint64([]byte("CurrentTerm")); v != 3 {
		t.Fatalf("a write after close reached the store: term %d", v)
	}
}
