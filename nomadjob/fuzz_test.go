package nomadjob_test

import (
	"encoding/json"
	"testing"

	nomad "github.com/hashicorp/nomad/api"

	"github.com/hyperfunc/hyperfunc/nomadjob"
)

func FuzzDecodeResult(f *testing.F) {
	f.Add([]byte(`{"v":1,"call_id":"c","exit_code":3,"stdout_bytes":8}`))
	f.Add([]byte(`stat /opt/nomad/data/alloc/x/alloc/data/result.json: no such file or directory`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := nomadjob.DecodeResult(b)
		if err == nil && r.Version == 0 {
			t.Fatal("accepted a result without version")
		}
	})
}

func FuzzDecodeAllocationEvent(f *testing.F) {
	f.Add([]byte(`{"Allocation":{"ID":"a","JobID":"j/dispatch-1-x","ClientStatus":"complete"}}`))
	f.Add([]byte(`{"Allocation":{"ID":1}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var payload map[string]any
		if json.Unmarshal(b, &payload) != nil {
			return
		}
		a, err := nomadjob.DecodeAllocationEvent(&nomad.Event{Topic: nomad.TopicAllocation, Payload: payload})
		if err == nil && (a.ID == "" || a.JobID == "") {
			t.Fatal("accepted an allocation without IDs")
		}
	})
}
