package server

import (
	"fmt"
	"testing"
	"time"

	"github.com/hyperfunc/hyperfunc/fsm"
)

func warmFns(spec ...string) []*fsm.Function {
	var out []*fsm.Function
	for i := 0; i+2 < len(spec)+1; i += 3 {
		var n int
		fmt.Sscan(spec[i+2], &n)
		out = append(out, &fsm.Function{ID: spec[i] + "/" + spec[i+1], Owner: spec[i], Name: spec[i+1], Warm: n})
	}
	return out
}

func wants(ws []warmWant) map[string]int {
	out := map[string]int{}
	for _, w := range ws {
		out[w.fn.ID] = w.n
	}
	return out
}

func TestWarmTargetsUserCap(t *testing.T) {
	p := warmPolicy{userCap: 4, agentCap: 100, idleTTL: time.Minute}
	// At the cap: every sandbox asked for is kept.
	got := wants(warmTargets(warmFns("alice", "a", "2", "alice", "b", "2"), nil, p))
	if got["alice/a"] != 2 || got["alice/b"] != 2 {
		t.Fatalf("at the user cap: %v", got)
	}
	// One past it: the last function (by ID) gets one less; another user
	// is not affected.
	got = wants(warmTargets(warmFns("alice", "a", "2", "alice", "b", "3", "bob", "c", "4"), nil, p))
	if got["alice/a"] != 2 || got["alice/b"] != 2 || got["bob/c"] != 4 {
		t.Fatalf("past the user cap: %v", got)
	}
}

func TestWarmTargetsAgentCap(t *testing.T) {
	p := warmPolicy{userCap: 100, agentCap: 3, idleTTL: time.Minute}
	got := wants(warmTargets(warmFns("alice", "a", "1", "bob", "b", "2"), nil, p))
	if got["alice/a"] != 1 || got["bob/b"] != 2 {
		t.Fatalf("at the agent cap: %v", got)
	}
	got = wants(warmTargets(warmFns("alice", "a", "2", "bob", "b", "2"), nil, p))
	if got["alice/a"] != 2 || got["bob/b"] != 1 {
		t.Fatalf("past the agent cap: %v", got)
	}
	p.agentCap = 0 // -warm-agent-cap 0: none at all
	if got := warmTargets(warmFns("alice", "a", "2"), nil, p); len(got) != 0 {
		t.Fatalf("agent cap 0: %v", wants(got))
	}
}

func TestWarmTargetsAdaptive(t *testing.T) {
	fns := warmFns("alice", "a", "0", "alice", "b", "0", "alice", "c", "3")
	recent := map[string]bool{"alice/a": true}
	p := warmPolicy{userCap: 100, agentCap: 100, idleTTL: time.Minute}
	if got := wants(warmTargets(fns, recent, p)); len(got) != 1 || got["alice/c"] != 3 {
		t.Fatalf("adaptive off: %v", got)
	}
	p.adaptive = true
	if got := wants(warmTargets(fns, recent, p)); len(got) != 2 || got["alice/a"] != 1 || got["alice/c"] != 3 {
		t.Fatalf("adaptive on: %v", got)
	}
}

// The idle TTL: a call within it keeps the function recent, one past it
// does not.
func TestWarmStateRecent(t *testing.T) {
	w := newWarmState()
	t0 := time.Now()
	w.noteCall("alice/a", t0, time.Minute)
	w.noteCall("alice/b", t0.Add(-time.Minute-time.Nanosecond), time.Minute)
	got := w.recent(t0.Add(time.Minute), time.Minute) // alice/a: exactly the TTL ago
	if !got["alice/a"] || got["alice/b"] {
		t.Fatalf("recent: %v", got)
	}
	if got := w.recent(t0.Add(time.Minute+time.Nanosecond), time.Minute); got["alice/a"] {
		t.Fatalf("past the TTL still recent: %v", got)
	}
}
