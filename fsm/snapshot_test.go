package fsm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/hyperfunc/hyperfunc/cachestore"
)

func rawLog(i uint64, data []byte) *raft.Log {
	return &raft.Log{Index: i, Type: raft.LogCommand, Data: data}
}

type memSink struct {
	bytes.Buffer
	canceled bool
}

func (s *memSink) ID() string    { return "mem" }
func (s *memSink) Cancel() error { s.canceled = true; return nil }
func (s *memSink) Close() error  { return nil }

// roundTrip snapshots f, restores into a fresh FSM and compares every table.
func roundTrip(t *testing.T, f *FSM) *FSM {
	t.Helper()
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Release()
	sink := &memSink{}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	g, _ := New(DefaultConfig(), t.TempDir())
	t.Cleanup(func() { g.Store().Close() })
	if err := g.Restore(io.NopCloser(&sink.Buffer)); err != nil {
		t.Fatal(err)
	}
	for _, st := range snapTables {
		if st.index == "" {
			continue // on disk: compared by hash below
		}
		a := dump(t, f, st)
		b := dump(t, g, st)
		if !reflect.DeepEqual(a, b) {
			t.Fatalf("table %s differs after restore:\n%v\n%v", st.table, a, b)
		}
	}
	ha, err := f.Store().Hash()
	if err != nil {
		t.Fatal(err)
	}
	if hb, _ := g.Store().Hash(); ha != hb {
		t.Fatal("the state differs after restore")
	}
	for _, k := range []cachestore.Kind{cachestore.KindOutput, cachestore.KindLog} {
		a := dumpUsage(t, f, k)
		if b := dumpUsage(t, g, k); !reflect.DeepEqual(a, b) {
			t.Fatalf("%s usage differs after restore:\n%v\n%v", k, a, b)
		}
	}
	return g
}

func dumpUsage(t *testing.T, f *FSM, k cachestore.Kind) []cachestore.Usage {
	it, err := f.Store().ReadTxn().Get(cachestore.TableUsage, cachestore.IndexID+"_prefix", string(k))
	if err != nil {
		t.Fatal(err)
	}
	var out []cachestore.Usage
	for raw := it.Next(); raw != nil; raw = it.Next() {
		out = append(out, *raw.(*cachestore.Usage))
	}
	return out
}

func dump(t *testing.T, f *FSM, st snapTable) []string {
	it, err := f.Store().ReadTxn().Get(st.table, st.index)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for raw := it.Next(); raw != nil; raw = it.Next() {
		out = append(out, jsonString(raw))
	}
	return out
}

// TestSnapshotRoundTripEveryCommand applies each command type, then checks
// that a snapshot taken after it restores to identical state.
func TestSnapshotRoundTripEveryCommand(t *testing.T) {
	h := newHarness(t)
	steps := []struct {
		mt  MessageType
		req any
	}{
		{UserUpsertType, &UserUpsertRequest{User: &User{Name: "alice", Quota: 2, CreatedAt: t0}, Create: true}},
		{UserUpsertType, &UserUpsertRequest{User: &User{Name: "bob", CreatedAt: t0}, Create: true}},
		{TokenUpsertType, &TokenUpsertRequest{Token: &Token{AccessorID: "a1", SecretHash: "s1", User: "alice", CreatedAt: t0}}},
		{TokenUpsertType, &TokenUpsertRequest{Token: &Token{AccessorID: "a2", SecretHash: "s2", User: "bob", CreatedAt: t0}}},
		{TokenDeleteType, &TokenDeleteRequest{AccessorID: "a2"}},
		{UserDeleteType, &UserDeleteRequest{Name: "bob"}},
		{FunctionUpsertType, &FunctionUpsertRequest{Function: &Function{ID: "alice/f", Owner: "alice", Name: "f", Image: "i", SecretHash: "x", Env: map[string]string{"A": "1"}, CreatedAt: t0}, Create: true}},
		{FunctionUpsertType, &FunctionUpsertRequest{Function: &Function{ID: "alice/g", Owner: "alice", Name: "g", Image: "i", SecretHash: "y", CreatedAt: t0}, Create: true}},
		{FunctionDeleteType, &FunctionDeleteRequest{ID: "alice/g"}},
		{CallEnqueueType, &CallEnqueueRequest{Calls: []*Call{{ID: "c1", Function: "alice/f", Owner: "alice", Stdin: []byte{0, 1, 2, 255}, CreatedAt: t0}, {ID: "c2", Function: "alice/f", Owner: "alice", CreatedAt: t0}, {ID: "c3", Function: "alice/f", Owner: "alice", CreatedAt: t0}}}},
		{CallEnqueueBinType, &CallEnqueueRequest{Calls: []*Call{{ID: "c4", Function: "alice/f", Owner: "alice", Stdin: []byte{7}, Env: map[string]string{"HTTP_X": "y"}, CreatedAt: t0}}, MaxQueued: 10}},
		{CallStartType, &CallStartRequest{IDs: []string{"c1", "c2"}, Time: t0}},
		{CallRunningType, &CallRunningRequest{Running: []CallRunning{{ID: "c1", Ref: "r1", Time: t0}}}},
		{CallRequeueType, &CallRequeueRequest{IDs: []string{"c2"}, Time: t0}},
		{CallFinishType, &CallFinishRequest{Results: []*CallResult{{ID: "c1", State: StateFinished, Stdout: []byte{9, 8, 0, 255}, Time: t0}}}},
		{CallCancelType, &CallCancelRequest{ID: "c3", Time: t0}},
		{PayloadStageType, &PayloadStageRequest{Key: "c5", Data: []byte{1, 2}, Time: t0}},
		{PayloadStageBinType, &PayloadStageRequest{Key: "c5", Offset: 2, Data: []byte{0, 3}, Time: t0}},
		{PayloadStageType, &PayloadStageRequest{Key: "orphan", Data: []byte{3}, Time: t0}},
		{CallEnqueueType, &CallEnqueueRequest{Calls: []*Call{{ID: "c5", Function: "alice/f", Owner: "alice", StdinSize: 4, CreatedAt: t0}}}},
		{PayloadDropType, &PayloadDropRequest{Before: t0.Add(time.Second)}},
		{MemberUpsertType, &MemberUpsertRequest{Member: &Member{ID: "n1", RaftAddr: "r", HTTPAddr: "h"}}},
		{MemberDeleteType, &MemberDeleteRequest{ID: "n1"}},
	}
	seen := map[MessageType]bool{}
	for _, s := range steps {
		h.mustApply(s.mt, s.req)
		seen[s.mt] = true
		g := roundTrip(t, h.f)
		// The restored FSM keeps applying like the original.
		if g.Store().LatestIndex() != h.f.Store().LatestIndex() {
			t.Fatalf("after %s: index %d vs %d", s.mt, g.Store().LatestIndex(), h.f.Store().LatestIndex())
		}
	}
	for mt := range typeNames {
		if !seen[mt] {
			t.Errorf("command %s has no snapshot round-trip step", mt)
		}
	}
}

func TestRestoreRejectsBadSnapshots(t *testing.T) {
	h := newHarness(t)
	h.fn("alice", "f")
	snap, _ := h.f.Snapshot()
	defer snap.Release()
	sink := &memSink{}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	good := sink.Bytes()
	cases := map[string][]byte{
		"empty":       nil,
		"wrong magic": append([]byte("NOTSNP"), good[6:]...),
		"new version": append(append([]byte("HFSNAP"), 9), good[7:]...),
		"truncated":   good[:len(good)-5],
		"unknown tag": append(append([]byte{}, good[:7]...), 200, 1, '{'),
	}
	for name, b := range cases {
		t.Run(name, func(t *testing.T) {
			g, _ := New(DefaultConfig(), t.TempDir())
			err := g.Restore(io.NopCloser(bytes.NewReader(b)))
			if !errors.Is(err, ErrBadSnapshot) {
				t.Fatalf("got %v", err)
			}
		})
	}
}

func TestHashFollowsState(t *testing.T) {
	a, b := newHarness(t), newHarness(t)
	a.fn("alice", "f")
	b.fn("alice", "f")
	ha, _ := a.f.Store().Hash()
	hb, _ := b.f.Store().Hash()
	if ha != hb {
		t.Fatal("replicas of the same entries hash differently")
	}
	b.enqueue("alice/f", "alice", "c1")
	hb, _ = b.f.Store().Hash()
	if ha == hb {
		t.Fatal("different states hash alike")
	}
}

// TestSnapshotLargeStdin: a call queued with more stdin than the former
// 8 MiB record bound (-max-stdin has no upper bound of its own) survives a
// snapshot; before, every snapshot taken while it was queued failed to
// restore ("record length").
func TestSnapshotLargeStdin(t *testing.T) {
	h := newHarness(t)
	h.fn("alice", "f")
	big := bytes.Repeat([]byte("0123456789abcdef"), (20<<20)/16) // 20 MiB, past 2 read chunks
	big = append(big, 'x')
	c := &Call{ID: "big", Function: "alice/f", Owner: "alice", Stdin: big, CreatedAt: t0}
	if res := h.mustApply(CallEnqueueType, &CallEnqueueRequest{Calls: []*Call{c}}).(*EnqueueResult); res.Errors[0] != nil {
		t.Fatal(res.Errors[0])
	}
	if b, err := roundTrip(t, h.f).Store().Stdin("big"); err != nil || !bytes.Equal(b, big) {
		t.Fatalf("stdin after the round trip: %d bytes (err %v), want %d", len(b), err, len(big))
	}
}

// TestSnapshotRecordPrefix: a length prefix at maxRecord is read as far as
// the file goes (a short file is a bad snapshot, without allocating the
// prefix's size), one past it is refused at once.
func TestSnapshotRecordPrefix(t *testing.T) {
	for _, n := range []uint64{maxRecord, maxRecord + 1} {
		var b bytes.Buffer
		b.WriteString(snapshotMagic)
		b.WriteByte(snapshotVersion)
		b.WriteByte(snapTables[0].tag)
		b.Write(binary.AppendUvarint(nil, n))
		b.WriteString("only a few bytes")
		g, _ := New(DefaultConfig(), t.TempDir())
		err := g.Restore(io.NopCloser(&b))
		g.Store().Close()
		if !errors.Is(err, ErrBadSnapshot) {
			t.Fatalf("prefix %d: %v, want a bad snapshot", n, err)
		}
		if past := n > maxRecord; past != strings.Contains(err.Error(), "record length") {
			t.Fatalf("prefix %d: %v", n, err)
		}
	}
}

func TestReadRecord(t *testing.T) {
	data := bytes.Repeat([]byte("r"), recordChunk*2+5)
	got, err := readRecord(bytes.NewReader(data), make([]byte, 0, 16), uint64(len(data)))
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("%d bytes, %v", len(got), err)
	}
	if got, err := readRecord(bytes.NewReader(data[:10]), nil, uint64(len(data))); err == nil || len(got) > recordChunk {
		t.Fatalf("short: %d bytes kept, %v", len(got), err)
	}
}
