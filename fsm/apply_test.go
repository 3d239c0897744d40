package fsm

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/hyperfunc/hyperfunc/cachestore"
)

func TestApplyUsersAndTokens(t *testing.T) {
	h := newHarness(t)
	h.mustApply(UserUpsertType, &UserUpsertRequest{User: &User{Name: "alice", Quota: 3}, Create: true})
	h.wantErr(ErrExists, UserUpsertType, &UserUpsertRequest{User: &User{Name: "alice"}, Create: true})
	h.mustApply(UserUpsertType, &UserUpsertRequest{User: &User{Name: "alice", Quota: 7}})
	u, _ := h.f.Store().User(nil, "alice")
	if u.Quota != 7 || u.CreateIndex != 1 || u.ModifyIndex != 3 {
		t.Fatalf("user after update: %+v", u)
	}
	h.mustApply(TokenUpsertType, &TokenUpsertRequest{Token: &Token{AccessorID: "a1", SecretHash: "s1", User: "alice"}})
	h.wantErr(ErrNotFound, TokenUpsertType, &TokenUpsertRequest{Token: &Token{AccessorID: "a2", SecretHash: "s2", User: "bob"}})
	h.wantErr(ErrExists, TokenUpsertType, &TokenUpsertRequest{Token: &Token{AccessorID: "a3", SecretHash: "s1", User: "alice"}})
	if tok, _ := h.f.Store().TokenBySecretHash("s1"); tok == nil || tok.User != "alice" {
		t.Fatalf("token by hash: %+v", tok)
	}
	h.mustApply(TokenDeleteType, &TokenDeleteRequest{AccessorID: "a1"})
	h.wantErr(ErrNotFound, TokenDeleteType, &TokenDeleteRequest{AccessorID: "a1"})
	h.mustApply(TokenUpsertType, &TokenUpsertRequest{Token: &Token{AccessorID: "a4", SecretHash: "s4", User: "alice"}})
	h.fn("alice", "f")
	h.wantErr(ErrConflict, UserDeleteType, &UserDeleteRequest{Name: "alice"})
	h.mustApply(FunctionDeleteType, &FunctionDeleteRequest{ID: "alice/f"})
	h.mustApply(UserDeleteType, &UserDeleteRequest{Name: "alice"})
	if tok, _ := h.f.Store().TokenBySecretHash("s4"); tok != nil {
		t.Fatal("the user's tokens survived its deletion")
	}
	h.wantErr(ErrNotFound, UserDeleteType, &UserDeleteRequest{Name: "alice"})
}

func TestApplyMembers(t *testing.T) {
	h := newHarness(t)
	h.mustApply(MemberUpsertType, &MemberUpsertRequest{Member: &Member{ID: "n1", RaftAddr: "r1", HTTPAddr: "h1"}})
	h.mustApply(MemberUpsertType, &MemberUpsertRequest{Member: &Member{ID: "n2", RaftAddr: "r2", HTTPAddr: "h2"}})
	h.mustApply(MemberDeleteType, &MemberDeleteRequest{ID: "n1"})
	ms, _ := h.f.Store().Members(nil)
	if len(ms) != 1 || ms[0].ID != "n2" {
		t.Fatalf("members: %+v", ms)
	}
}

func TestApplyFunctions(t *testing.T) {
	h := newHarness(t)
	f := h.fn("alice", "hello")
	h.wantErr(ErrExists, FunctionUpsertType, &FunctionUpsertRequest{Function: f, Create: true})
	g := *f
	g.Image, g.SecretHash = "ubuntu", "new-secret"
	h.mustApply(FunctionUpsertType, &FunctionUpsertRequest{Function: &g})
	got, _ := h.f.Store().Function(nil, f.ID)
	if got.Image != "ubuntu" || got.CreateIndex != 1 || got.ModifyIndex != 3 {
		t.Fatalf("after update: %+v", got)
	}
	if byOld, _ := h.f.Store().FunctionBySecretHash(f.SecretHash); byOld != nil {
		t.Fatal("the old secret still finds the function after a refresh")
	}
	missing := *f
	missing.ID, missing.Name, missing.SecretHash = "alice/nope", "nope", "x"
	h.wantErr(ErrNotFound, FunctionUpsertType, &FunctionUpsertRequest{Function: &missing})

	// Delete: refused while a call runs, queued calls go with it.
	h.enqueue(f.ID, "alice", "c1", "c2")
	h.mustApply(CallStartType, &CallStartRequest{IDs: []string{"c1"}, Time: t0})
	h.wantErr(ErrConflict, FunctionDeleteType, &FunctionDeleteRequest{ID: f.ID})
	h.mustApply(CallFinishType, &CallFinishRequest{Results: []*CallResult{{ID: "c1", State: StateFinished, Stdout: []byte("x"), Time: t0}}})
	h.mustApply(FunctionDeleteType, &FunctionDeleteRequest{ID: f.ID})
	if u, _ := h.f.Store().OwnerUsage("alice"); u.Pending != 0 || u.Running != 0 {
		t.Fatalf("usage after delete: %+v", u)
	}
	if c, _ := h.f.Store().Call(nil, "c2"); c != nil {
		t.Fatal("queued call survived its function")
	}
	if logs, _ := h.f.Store().Logs(nil, f.ID, 0, 0); len(logs) != 0 {
		t.Fatalf("%d log entries survived their function", len(logs))
	}
	h.wantErr(ErrNotFound, FunctionDeleteType, &FunctionDeleteRequest{ID: f.ID})
}

func TestApplyCallLifecycle(t *testing.T) {
	h := newHarness(t)
	f := h.fn("alice", "hello")
	h.enqueue(f.ID, "alice", "c1", "c2", "c3")
	if u, _ := h.f.Store().OwnerUsage("alice"); u.Pending != 3 {
		t.Fatalf("pending: %+v", u)
	}
	q, _ := h.f.Store().Queue(nil, "alice", StatePending, 0)
	if len(q) != 3 || q[0].ID != "c1" || q[2].ID != "c3" {
		t.Fatalf("queue order: %v", ids(q))
	}
	started := h.mustApply(CallStartType, &CallStartRequest{IDs: []string{"c1", "c2", "nope"}, Time: t0}).([]string)
	if len(started) != 2 {
		t.Fatalf("started %v", started)
	}
	// A second start of the same calls starts nothing: at most once.
	if again := h.mustApply(CallStartType, &CallStartRequest{IDs: []string{"c1"}, Time: t0}).([]string); len(again) != 0 {
		t.Fatalf("started twice: %v", again)
	}
	h.mustApply(CallRunningType, &CallRunningRequest{Running: []CallRunning{{ID: "c1", Ref: "ctr-1", Time: t0}}})
	if c := h.call("c1"); c.State != StateRunning || c.Ref != "ctr-1" {
		t.Fatalf("c1: %+v", c)
	}
	h.mustApply(CallFinishType, &CallFinishRequest{Results: []*CallResult{
		{ID: "c1", State: StateFinished, Stdout: []byte("HelloWorld\n"), Time: t0},
		{ID: "c2", State: StateFailed, Reason: "exit", ExitCode: 3, Message: "exit code 3", Time: t0, Ref: "ctr-2"},
	}})
	// Reported again: ignored.
	h.mustApply(CallFinishType, &CallFinishRequest{Results: []*CallResult{{ID: "c1", State: StateFailed, Time: t0}}})
	c1 := h.call("c1")
	if c1.State != StateFinished || c1.Stdin != nil || c1.StdoutSize != 11 {
		t.Fatalf("c1 final: %+v", c1)
	}
	out, _ := h.f.Store().Output(nil, "c1")
	if out == nil || !bytes.Equal(out.Data, []byte("HelloWorld\n")) {
		t.Fatalf("output: %+v", out)
	}
	// c2 ended before its CallRunning: the result carries its Ref.
	if c2 := h.call("c2"); c2.State != StateFailed || c2.ExitCode != 3 || c2.Ref != "ctr-2" {
		t.Fatalf("c2: %+v", c2)
	}
	st, _ := h.f.Store().FunctionStats(nil, f.ID)
	if st.Pending != 1 || st.Running != 0 || st.Finished != 1 || st.Failed != 1 {
		t.Fatalf("stats: %+v", st)
	}
	logs, _ := h.f.Store().Logs(nil, f.ID, 0, 0)
	var kinds []string
	for _, e := range logs {
		if e.CallID == "c1" {
			for _, l := range e.Lines() {
				kinds = append(kinds, l[0])
			}
		}
	}
	if want := []string{"CALL", "PENDING", "RUNNING", "FINISHED"}; !equal(kinds, want) {
		t.Fatalf("c1 log kinds %v, want %v", kinds, want)
	}
}

func TestApplyEnqueueBounds(t *testing.T) {
	h := newHarness(t)
	f := h.fn("alice", "hello")
	calls := func(ids ...string) []*Call {
		var cs []*Call
		for _, id := range ids {
			cs = append(cs, &Call{ID: id, Function: f.ID, Owner: "alice"})
		}
		return cs
	}
	// At the limit: two queued; one past it: refused, the rest unchanged.
	res := h.mustApply(CallEnqueueType, &CallEnqueueRequest{Calls: calls("a", "b", "c"), MaxQueued: 2}).(*EnqueueResult)
	if res.Errors[0] != nil || res.Errors[1] != nil || res.Errors[2] == nil {
		t.Fatalf("errors: %v", res.Errors)
	}
	if u, _ := h.f.Store().OwnerUsage("alice"); u.Pending != 2 {
		t.Fatalf("pending %d", u.Pending)
	}
	res = h.mustApply(CallEnqueueType, &CallEnqueueRequest{Calls: []*Call{{ID: "x", Function: "alice/nope", Owner: "alice"}, {ID: "a", Function: f.ID, Owner: "alice"}}}).(*EnqueueResult)
	if res.Errors[0] == nil || res.Errors[1] == nil {
		t.Fatalf("unknown function and duplicate ID must fail: %v", res.Errors)
	}
}

func TestApplyCancelAndRequeue(t *testing.T) {
	h := newHarness(t)
	f := h.fn("alice", "hello")
	h.enqueue(f.ID, "alice", "c1", "c2", "c3")
	h.mustApply(CallCancelType, &CallCancelRequest{ID: "c1", Time: t0})
	if c := h.call("c1"); c.State != StateCanceled {
		t.Fatalf("c1: %s", c.State)
	}
	h.wantErr(ErrConflict, CallCancelType, &CallCancelRequest{ID: "c1", Time: t0})
	h.wantErr(ErrNotFound, CallCancelType, &CallCancelRequest{ID: "nope", Time: t0})
	h.mustApply(CallStartType, &CallStartRequest{IDs: []string{"c2", "c3"}, Time: t0})
	h.mustApply(CallCancelType, &CallCancelRequest{ID: "c2", Time: t0})
	if c := h.call("c2"); c.State != StateStarting || !c.CancelRequested {
		t.Fatalf("c2: %+v", c)
	}
	h.mustApply(CallRequeueType, &CallRequeueRequest{IDs: []string{"c3"}, Message: "nomad unavailable", Time: t0})
	q, _ := h.f.Store().Queue(nil, "alice", StatePending, 0)
	if len(q) != 1 || q[0].ID != "c3" {
		t.Fatalf("queue after requeue: %v", ids(q))
	}
	if u, _ := h.f.Store().OwnerUsage("alice"); u.Pending != 1 || u.Running != 1 {
		t.Fatalf("usage: %+v", u)
	}
}

func TestApplyUnknownTypeFlag(t *testing.T) {
	h := newHarness(t)
	h.index++
	if res := h.f.Apply(rawLog(h.index, []byte{byte(99 | IgnoreUnknownTypeFlag), '{', '}'})); res != nil {
		t.Fatalf("skippable unknown type: %v", res)
	}
	defer func() {
		if recover() == nil {
			t.Fatal("an unknown type without the ignore flag must stop the node")
		}
	}()
	h.f.Apply(rawLog(h.index+1, []byte{99, '{', '}'}))
}

func ids(cs []*Call) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.ID)
	}
	return out
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestStdinOnDisk: a queued call's stdin waits apart from its record;
// a snapshot carries it; it goes when the call ends or its function does.
func TestStdinOnDisk(t *testing.T) {
	h := newHarness(t)
	f := h.fn("alice", "f")
	g := h.fn("alice", "g")
	h.enqueue(f.ID, "alice", "c1", "c2")
	h.enqueue(g.ID, "alice", "c3")
	st := h.f.Store()
	stdin := func(s *Store, id string) string {
		b, err := s.Stdin(id)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	if c := h.call("c1"); c.Stdin != nil || c.StdinSize != int64(len("in-c1")) || stdin(st, "c1") != "in-c1" {
		t.Fatalf("queued: record stdin %q size %d, disk %q", c.Stdin, c.StdinSize, stdin(st, "c1"))
	}
	if g := roundTrip(t, h.f).Store(); stdin(g, "c1") != "in-c1" || stdin(g, "c3") != "in-c3" {
		t.Fatal("a restored replica lost a queued call's stdin")
	}
	h.mustApply(CallStartType, &CallStartRequest{IDs: []string{"c1"}, Time: t0})
	h.mustApply(CallFinishType, &CallFinishRequest{Results: []*CallResult{{ID: "c1", State: StateFinished, Time: t0}}})
	h.mustApply(CallCancelType, &CallCancelRequest{ID: "c2", Time: t0})
	h.mustApply(FunctionDeleteType, &FunctionDeleteRequest{ID: g.ID})
	for _, id := range []string{"c1", "c2", "c3"} {
		if s := stdin(st, id); s != "" {
			t.Fatalf("%s: stdin %q kept after its call or function ended", id, s)
		}
	}
}

// TestStdinHeldThenSpilled: queued stdin is kept in memory up to
// cachestore.DefaultHeldStdinMax (a stdin that fills it exactly is held),
// the next byte goes to disk; both read back, survive a snapshot, and go
// when their calls end, which gives the memory back.
func TestStdinHeldThenSpilled(t *testing.T) {
	h := newHarness(t)
	h.fn("alice", "f")
	// Four quarters fill the bound exactly.
	quarter := bytes.Repeat([]byte("q"), int(cachestore.DefaultHeldStdinMax/4))
	want := map[string][]byte{"one": []byte("1")}
	var calls []*Call
	for i := range 4 {
		id := fmt.Sprintf("q%d", i)
		want[id] = quarter
		calls = append(calls, &Call{ID: id, Function: "alice/f", Owner: "alice", Stdin: quarter, CreatedAt: t0})
	}
	calls = append(calls, &Call{ID: "one", Function: "alice/f", Owner: "alice", Stdin: []byte("1"), CreatedAt: t0})
	st := h.f.Store()
	var ids []string
	for _, c := range calls {
		if res := h.mustApply(CallEnqueueType, &CallEnqueueRequest{Calls: []*Call{c}}).(*EnqueueResult); res.Errors[0] != nil {
			t.Fatal(res.Errors[0])
		}
		ids = append(ids, c.ID)
	}
	if got := st.HeldStdinBytes(); got != cachestore.DefaultHeldStdinMax {
		t.Fatalf("held %d bytes of stdin, want %d (the quarters, not the byte past them)", got, cachestore.DefaultHeldStdinMax)
	}
	check := func(s *Store) {
		t.Helper()
		for id, w := range want {
			if b, err := s.Stdin(id); err != nil || !bytes.Equal(b, w) {
				t.Fatalf("stdin of %s: %d bytes (err %v), want %d", id, len(b), err, len(w))
			}
		}
	}
	check(st)
	check(roundTrip(t, h.f).Store())
	h.mustApply(CallStartType, &CallStartRequest{IDs: ids, Time: t0})
	var rs []*CallResult
	for _, id := range ids {
		rs = append(rs, &CallResult{ID: id, State: StateFinished, Time: t0})
	}
	h.mustApply(CallFinishType, &CallFinishRequest{Results: rs})
	if got := st.HeldStdinBytes(); got != 0 {
		t.Fatalf("held %d bytes of stdin after the calls ended", got)
	}
	for _, id := range ids {
		if b, _ := st.Stdin(id); b != nil {
			t.Fatalf("%s: stdin kept after its call ended", id)
		}
	}
}
