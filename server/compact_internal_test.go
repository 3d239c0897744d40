package server

import "testing"

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
