package chaos

import (
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/hyperfunc/hyperfunc/api"
)

// The model of one call (the history is partitioned by call ID): a register
// holding the call's state, which only the server moves, and only forward:
// absent -> PENDING -> RUNNING -> FINISHED|FAILED|CANCELED. A client's
// enqueue creates it; a consistent read may find it further along than the
// last read did (the server moved it meanwhile), never behind, and never
// at another final state than one already seen.

type modelInput struct {
	kind opKind
	id   string
}

type modelOutput struct {
	state string // opRead: the state seen ("" = not found)
}

func rank(state string) int {
	switch state {
	case "":
		return 0
	case api.StatePending:
		return 1
	case api.StateRunning:
		return 2
	case api.StateFinished, api.StateFailed, api.StateCanceled:
		return 3
	}
	return -1 // unknown states never linearize
}

var callModel = newCallModel(false)

// relaxedModel also lets a call go from RUNNING back to PENDING: what a
// requeue of a STARTING call did while STARTING was shown as RUNNING (it is
// shown as PENDING now). A history that only
// this model accepts shows that and nothing worse.
var relaxedModel = newCallModel(true)

func newCallModel(requeueVisible bool) porcupine.Model {
	return porcupine.Model{
		Partition: func(h []porcupine.Operation) [][]porcupine.Operation {
			byID := map[string][]porcupine.Operation{}
			var ids []string
			for _, op := range h {
				id := op.Input.(modelInput).id
				if _, ok := byID[id]; !ok {
					ids = append(ids, id)
				}
				byID[id] = append(byID[id], op)
			}
			sort.Strings(ids)
			out := make([][]porcupine.Operation, 0, len(ids))
			for _, id := range ids {
				out = append(out, byID[id])
			}
			return out
		},
		Init: func() any { return "" },
		Step: func(state, input, output any) (bool, any) {
			st := state.(string)
			in := input.(modelInput)
			switch in.kind {
			case opEnqueue:
				// The server may have moved the call on before the answer.
				return st == "", api.StatePending
			case opRead:
				seen := output.(modelOutput).state
				r, cur := rank(seen), rank(st)
				if requeueVisible && st == api.StateRunning && seen == api.StatePending {
					return true, seen
				}
				if r < 0 || r < cur {
					return false, st
				}
				if cur == 3 && seen != st {
					return false, st // one final state, once and for all
				}
				return true, seen
			}
			return false, st
		},
		Equal: func(a, b any) bool { return a.(string) == b.(string) },
		DescribeOperation: func(input, output any) string {
			in := input.(modelInput)
			if in.kind == opEnqueue {
				return "enqueue(" + in.id + ")"
			}
			st := output.(modelOutput).state
			if st == "" {
				st = "not found"
			}
			return "read(" + in.id + ") -> " + st
		},
		DescribeState: func(state any) string {
			if state.(string) == "" {
				return "absent"
			}
			return state.(string)
		},
	}
}

// toPorcupine turns the recorded history into porcupine operations. The
// enqueue's linearization point lies between its invoke and its return;
// the model accepts a read of PENDING or later only after it.
func toPorcupine(ops []histOp) []porcupine.Operation {
	out := make([]porcupine.Operation, 0, len(ops))
	for _, op := range ops {
		out = append(out, porcupine.Operation{
			ClientId: op.client,
			Input:    modelInput{kind: op.kind, id: op.id},
			Output:   modelOutput{state: op.state},
			Call:     op.call,
			Return:   op.ret,
			Metadata: op.node,
		})
	}
	return out
}

// checkLinearizable runs porcupine; on a violation it names the first call
// whose history does not linearize, with its operations in time order.
func checkLinearizable(model porcupine.Model, ops []histOp, timeout time.Duration) (porcupine.CheckResult, string) {
	res := porcupine.CheckOperationsTimeout(model, toPorcupine(ops), timeout)
	if res != porcupine.Illegal {
		return res, ""
	}
	// Find the partitions that fail on their own, for a precise message.
	byID := map[string][]histOp{}
	for _, op := range ops {
		byID[op.id] = append(byID[op.id], op)
	}
	var bad []string
	for id, h := range byID {
		if porcupine.CheckOperations(model, toPorcupine(h)) {
			continue
		}
		sort.Slice(h, func(i, j int) bool { return h[i].call < h[j].call })
		msg := fmt.Sprintf("call %s:", id)
		for _, op := range h {
			what := "enqueue"
			if op.kind == opRead {
				what = "read -> " + op.state
				if op.state == "" {
					what = "read -> not found"
				}
			}
			msg += fmt.Sprintf("\n    [%9.3fs, %9.3fs] client %2d via %s: %s",
				float64(op.call)/1e9, float64(op.ret)/1e9, op.client, op.node, what)
		}
		bad = append(bad, msg)
	}
	sort.Strings(bad)
	if len(bad) > 5 {
		bad = append(bad[:5], fmt.Sprintf("... and %d more calls", len(bad)-5))
	}
	out := ""
	for _, b := range bad {
		out += "\n  " + b
	}
	return res, out
}

// The model itself must accept what is right and reject what is wrong.
func TestCallModel(t *testing.T) {
	ms := func(n int64) int64 { return n * int64(time.Millisecond) }
	enq := histOp{kind: opEnqueue, id: "a", call: ms(0), ret: ms(10)}
	read := func(state string, call, ret int64) histOp {
		return histOp{kind: opRead, id: "a", state: state, call: ms(call), ret: ms(ret), client: 1}
	}
	cases := []struct {
		name string
		ops  []histOp
		ok   bool
	}{
		{"forward", []histOp{enq, read("PENDING", 11, 12), read("RUNNING", 13, 14), read("FINISHED", 15, 16)}, true},
		{"skips states", []histOp{enq, read("FINISHED", 11, 12), read("FINISHED", 13, 14)}, true},
		{"concurrent reads in any order", []histOp{enq, read("FINISHED", 11, 20), read("PENDING", 12, 19)}, true},
		{"read during the enqueue", []histOp{enq, read("RUNNING", 5, 12)}, true},
		{"stale read after a newer one", []histOp{enq, read("RUNNING", 11, 12), read("PENDING", 13, 14)}, false},
		{"back from final", []histOp{enq, read("FINISHED", 11, 12), read("RUNNING", 13, 14)}, false},
		{"two final states", []histOp{enq, read("FINISHED", 11, 12), read("FAILED", 13, 14)}, false},
		{"lost after ack", []histOp{enq, read("", 11, 12)}, false},
		{"not found before the ack", []histOp{read("", 0, 1), enq, read("PENDING", 11, 12)}, true},
	}
	requeue := []histOp{enq, read("RUNNING", 11, 12), read("PENDING", 13, 14), read("FINISHED", 15, 16)}
	if res, _ := checkLinearizable(callModel, requeue, 10*time.Second); res != porcupine.Illegal {
		t.Errorf("RUNNING then PENDING: %s, want Illegal", res)
	}
	if res, why := checkLinearizable(relaxedModel, requeue, 10*time.Second); res != porcupine.Ok {
		t.Errorf("relaxed model, RUNNING then PENDING: %s, want Ok%s", res, why)
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res, why := checkLinearizable(callModel, tc.ops, 10*time.Second)
			if got := res == porcupine.Ok; got != tc.ok {
				t.Fatalf("linearizable = %v (%s), want %v%s", got, res, tc.ok, why)
			}
		})
	}
}
