package fsm

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func jsonString(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func TestEncodeDecodeEveryType(t *testing.T) {
	for mt, mk := range requestTypes {
		b, err := Encode(mt, mk())
		if err != nil {
			t.Fatal(err)
		}
		got, req, err := Decode(b)
		if err != nil || got != mt || req == nil {
			t.Fatalf("%s: %v %v", mt, got, err)
		}
		if strings.HasPrefix(mt.String(), "MessageType(") {
			t.Fatalf("%d has no name", mt)
		}
	}
	if _, _, err := Decode(nil); !errors.Is(err, ErrEmptyEntry) {
		t.Fatal(err)
	}
	if _, _, err := Decode([]byte{200}); !errors.Is(err, ErrUnknownType) {
		t.Fatal(err)
	}
}

// FuzzDecode feeds arbitrary bytes to the command decoder: it must answer
// an error or a request, never panic.
func FuzzDecode(f *testing.F) {
	for mt, mk := range requestTypes {
		b, _ := Encode(mt, mk())
		f.Add(b)
	}
	f.Add([]byte{byte(CallEnqueueType), '{', '"', 'C', 'a', 'l', 'l', 's', '"', ':', '[', 'n', 'u', 'l', 'l', ']', '}'})
	f.Fuzz(func(t *testing.T, b []byte) {
		mt, req, err := Decode(b)
		if err == nil && req == nil {
			t.Fatalf("%s: no error and no request", mt)
		}
	})
}

// A chunk goes through PayloadStageBin unchanged (raw, not base64), and
// its entry is its payload plus a few bytes.
func TestPayloadStageBinRoundTrip(t *testing.T) {
	data := make([]byte, 384<<10)
	for i := range data {
		data[i] = byte(i * 7)
	}
	want := &PayloadStageRequest{Key: StagedStdout("c1"), Offset: 768 << 10, Data: data, Time: t0}
	b, err := Encode(PayloadStageBinType, want)
	if err != nil {
		t.Fatal(err)
	}
	if over := len(b) - len(data); over > 64 {
		t.Fatalf("entry is %d bytes past its payload", over)
	}
	mt, req, err := Decode(b)
	got, _ := req.(*PayloadStageRequest)
	if err != nil || mt != PayloadStageBinType || got == nil {
		t.Fatalf("decode: %v %v %T", mt, err, req)
	}
	if jsonString(got) != jsonString(want) {
		t.Fatalf("round trip changed the chunk: %+v", got)
	}
	b[len(b)-1] ^= 0xff // the decoded chunk is a copy, not the entry's buffer
	if got.Data[len(data)-1] != data[len(data)-1] {
		t.Fatal("decoded chunk aliases the entry")
	}
	if _, _, err := Decode(b[:3]); err == nil {
		t.Fatal("a truncated header decoded")
	}
}
