package fsm

import (
	"flag"
	"fmt"
	"os"
	"sort"
	"strings"
	"testing"

	memdb "github.com/hashicorp/go-memdb"
)

var update = flag.Bool("update", false, "rewrite golden files")

// TestSchemaGolden pins the schema: a table or index changed by accident
// shows up here, as it would change what snapshots and reads mean.
func TestSchemaGolden(t *testing.T) {
	var b strings.Builder
	s := Schema()
	var names []string
	for n := range s.Tables {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(&b, "%s\n", n)
		var idx []string
		for in := range s.Tables[n].Indexes {
			idx = append(idx, in)
		}
		sort.Strings(idx)
		for _, in := range idx {
			is := s.Tables[n].Indexes[in]
			fmt.Fprintf(&b, "  %s unique=%v allowMissing=%v %s\n", in, is.Unique, is.AllowMissing, describe(is.Indexer))
		}
	}
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	const golden = "testdata/schema.golden"
	if *update {
		os.MkdirAll("testdata", 0o755)
		if err := os.WriteFile(golden, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test ./fsm -run Golden -update)", err)
	}
	if string(want) != b.String() {
		t.Fatalf("schema changed:\n%s\nwant:\n%s", b.String(), want)
	}
}

// TestFunctionPrefixIsExact: a function whose ID starts with another's is
// untouched by the other's deletion (memdb prefix lookups are prefixes).
func TestFunctionPrefixIsExact(t *testing.T) {
	h := newHarness(t)
	h.fn("alice", "f")
	h.fn("alice", "foo")
	h.enqueue("alice/f", "alice", "c1")
	h.enqueue("alice/foo", "alice", "c2")
	if cs, _ := h.f.Store().CallsOfFunction(nil, "alice/f"); len(cs) != 1 {
		t.Fatalf("calls of alice/f: %v", ids(cs))
	}
	h.mustApply(FunctionDeleteType, &FunctionDeleteRequest{ID: "alice/f"})
	if c, _ := h.f.Store().Call(nil, "c2"); c == nil {
		t.Fatal("alice/foo lost a call when alice/f was deleted")
	}
	if logs, _ := h.f.Store().Logs(nil, "alice/foo", 0, 0); len(logs) != 1 {
		t.Fatalf("alice/foo logs: %d", len(logs))
	}
}

func describe(ix memdb.Indexer) string {
	if c, ok := ix.(*memdb.CompoundIndex); ok {
		var parts []string
		for _, sub := range c.Indexes {
			parts = append(parts, describe(sub))
		}
		return "compound(" + strings.Join(parts, ", ") + ")"
	}
	if st, ok := ix.(fmt.Stringer); ok {
		return st.String()
	}
	return fmt.Sprintf("%T%+v", ix, ix)
}
