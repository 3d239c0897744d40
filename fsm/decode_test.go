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
