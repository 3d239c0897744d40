package fsm

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"io"
	"reflect"
	"testing"
	"time"

	"github.com/hyperfunc/hyperfunc/cachestore"
)

func TestCallCodecRoundTrip(t *testing.T) {
	calls := []*Call{
		{},
		{ID: "c1", Function: "alice/f", Owner: "alice", State: StateFailed, Reason: "exit", Message: "exit code 3: é",
			ExitCode: -7, Stdin: []byte{0, 255}, StdinSize: 2, StdoutSize: 9, Env: map[string]string{"B": "2", "A": ""},
			Key: "k", Ref: "r", CancelRequested: true, Rotated: true, Seq: 1 << 40,
			CreatedAt: t0, StartedAt: t0.Add(time.Nanosecond), FinishedAt: t0.Add(time.Hour), CreateIndex: 3, ModifyIndex: 9, LogSeq: 77},
		{ID: "c2", Stdin: []byte{}, Env: map[string]string{}},
	}
	for _, c := range calls {
		got, err := decodeCall(encodeCall(c, nil), map[string]string{})
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, c) {
			t.Fatalf("round trip:\n%+v\n%+v", got, c)
		}
	}
	l := &cachestore.LogEntry{Function: "f", Seq: 5, Time: t0, CallID: "c", Kind: "CALL", Text: "x"}
	if got, err := cachestore.DecodeLog(cachestore.EncodeLog(l, nil), nil); err != nil || !reflect.DeepEqual(got, l) {
		t.Fatalf("log: %+v %v", got, err)
	}
	o := &cachestore.Output{CallID: "c", Function: "f", Seq: 5, Data: []byte("out")}
	if got, err := cachestore.DecodeOutput(cachestore.EncodeOutput(o, nil), nil); err != nil || !reflect.DeepEqual(got, o) {
		t.Fatalf("output: %+v %v", got, err)
	}
}

// TestRestoreReadsJSONRecords: snapshots written before the binary codec
// (JSON records under the old tags) still restore.
func TestRestoreReadsJSONRecords(t *testing.T) {
	var buf bytes.Buffer
	buf.WriteString("HFSNAP")
	buf.WriteByte(1)
	rec := func(tag byte, v any) {
		b, _ := json.Marshal(v)
		buf.WriteByte(tag)
		var lb [10]byte
		n := binary.PutUvarint(lb[:], uint64(len(b)))
		buf.Write(lb[:n])
		buf.Write(b)
	}
	rec(4, &Call{ID: "c1", Function: "alice/f", Owner: "alice", State: StatePending, Seq: 1})
	rec(9, &cachestore.Output{CallID: "c0", Function: "alice/f", Seq: 1, Data: []byte("x")})
	rec(10, &cachestore.LogEntry{Function: "alice/f", Seq: 1, Kind: "CALL", CallID: "c1"})
	buf.WriteByte(0)
	f, _ := New(DefaultConfig(), t.TempDir())
	if err := f.Restore(io.NopCloser(&buf)); err != nil {
		t.Fatal(err)
	}
	if c, _ := f.Store().Call(nil, "c1"); c == nil || c.Owner != "alice" {
		t.Fatalf("call: %+v", c)
	}
	if o, _ := f.Store().Output(nil, "c0"); o == nil || string(o.Data) != "x" {
		t.Fatalf("output: %+v", o)
	}
}

// FuzzDecodeRecords: a corrupt snapshot record is an error, never a panic
// or a huge allocation.
func FuzzDecodeRecords(f *testing.F) {
	f.Add(encodeCall(&Call{ID: "c", Env: map[string]string{"A": "1"}, Stdin: []byte("x")}, nil))
	f.Add(cachestore.EncodeLog(&cachestore.LogEntry{Function: "f", Kind: "CALL"}, nil))
	f.Add(cachestore.EncodeOutput(&cachestore.Output{CallID: "c", Data: []byte("d")}, nil))
	f.Add([]byte{1, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, b []byte) {
		if c, err := decodeCall(b, map[string]string{}); err == nil {
			if again, err := decodeCall(encodeCall(c, nil), nil); err != nil || !reflect.DeepEqual(again, c) {
				t.Fatalf("accepted record does not round-trip: %v", err)
			}
		}
		cachestore.DecodeLog(b, nil)
		cachestore.DecodeOutput(b, nil)
	})
}
