package server_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"testing"

	"github.com/hyperfunc/hyperfunc/api"
	"github.com/hyperfunc/hyperfunc/server/servertest"
)

func decodeCalls(t *testing.T, r *response) []*api.Call {
	t.Helper()
	var out []*api.Call
	if err := json.Unmarshal(r.Body, &out); err != nil {
		t.Fatalf("decoding %s: %v", r.Body, err)
	}
	return out
}

// syncCalls makes n sync calls of fn on an ACL-less server, each answered
// with status, and answers their IDs in acceptance order.
func syncCalls(t *testing.T, url, fn string, n, status int) []string {
	t.Helper()
	var ids []string
	for range n {
		r := do(t, http.MethodPost, url+"/v1/functions/"+fn+"/call?sync=true", "", "").want(t, status)
		ids = append(ids, r.Header.Get(api.HeaderCallID))
	}
	return ids
}

// okAndBad starts a one-server cluster without ACLs with functions ok
// (echo hi) and bad (exit 3), and makes nOK and nBad sync calls of them.
func okAndBad(t *testing.T, nOK, nBad int) (c *servertest.Cluster, okIDs, badIDs []string) {
	t.Helper()
	c = servertest.NewCluster(t, 1, servertest.Options{})
	c.WaitForLeader()
	createFn(t, c.Client(0), "ok", "echo", "hi")
	createFn(t, c.Client(0), "bad", "exit", "3")
	return c, syncCalls(t, c.URL(0), "ok", nOK, 200), syncCalls(t, c.URL(0), "bad", nBad, 500)
}

func callIDs(cs []*api.Call) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = c.ID
	}
	return out
}

// GET /v1/calls pages a function's calls by a cursor, newest or oldest
// first, filters by state, lists failures across functions, and answers
// bad parameters with a 400 that says what is wrong.
func TestListCallsPages(t *testing.T) {
	c, okIDs, badIDs := okAndBad(t, 7, 2)
	list := func(q string) []*api.Call {
		return decodeCalls(t, do(t, http.MethodGet, c.URL(0)+"/v1/calls?"+q, "", nil).want(t, 200))
	}
	// Without paging parameters: every call, oldest first (as before).
	if got := callIDs(list("function=ok")); !slices.Equal(got, okIDs) {
		t.Fatalf("all calls %v, want %v", got, okIDs)
	}
	// Newest first, 3 a page, to the end.
	var pages []string
	cursor := ""
	for i := 0; i < 10; i++ {
		page := list("function=ok&order=desc&limit=3" + cursor)
		if len(page) == 0 {
			break
		}
		pages = append(pages, callIDs(page)...)
		cursor = "&before=" + page[len(page)-1].ID
	}
	want := slices.Clone(okIDs)
	slices.Reverse(want)
	if !slices.Equal(pages, want) {
		t.Fatalf("desc pages %v, want %v", pages, want)
	}
	// Oldest first after a cursor.
	if got := callIDs(list("function=ok&limit=2&after=" + okIDs[2])); !slices.Equal(got, okIDs[3:5]) {
		t.Fatalf("asc page after the 3rd: %v, want %v", got, okIDs[3:5])
	}
	// States: across functions, and within one.
	failed := list("state=FAILED&order=desc")
	if got := callIDs(failed); !slices.Equal(got, []string{badIDs[1], badIDs[0]}) {
		t.Fatalf("failures %v, want %v newest first", got, badIDs)
	}
	if failed[0].Reason != api.ReasonExit || failed[0].Function != "bad" || failed[0].ExitCode != 3 {
		t.Fatalf("failure record %+v", failed[0])
	}
	if got := list("function=bad&state=FINISHED"); len(got) != 0 {
		t.Fatalf("finished calls of bad: %v", callIDs(got))
	}
	if got := list("state=FINISHED&state=FAILED&state=FAILED&limit=4&order=desc"); !slices.Equal(callIDs(got), []string{badIDs[1], badIDs[0], okIDs[6], okIDs[5]}) {
		t.Fatalf("finished or failed, newest 4: %v", callIDs(got))
	}
	for q, want := range map[string]int{
		"":                                         400,
		"function=ok&limit=abc":                    400,
		"function=ok&limit=1001":                   400,
		"function=ok&state=DONE":                   400,
		"function=ok&order=sideways":               400,
		"function=ok&before=" + okIDs[0]:           400, // before goes with desc
		"function=ok&order=desc&after=" + okIDs[0]: 400,
		"function=Bad!":                            400,
		"function=ok&order=desc&before=nope":       404,
	} {
		r := do(t, http.MethodGet, c.URL(0)+"/v1/calls?"+q, "", nil).want(t, want)
		if msg := r.errorBody(t); msg == "" {
			t.Errorf("%s: no message", q)
		}
	}
}

// A blocking list of calls answers at each change of the calls, so a
// reader that follows the index sees a new call finish without polling.
func TestListCallsBlocks(t *testing.T) {
	c := servertest.NewCluster(t, 1, servertest.Options{})
	c.WaitForLeader()
	createFn(t, c.Client(0), "ok", "echo", "hi")
	r := do(t, http.MethodGet, c.URL(0)+"/v1/calls?state=FINISHED&order=desc&limit=5", "", nil).want(t, 200)
	type answer struct {
		calls  []*api.Call
		rounds int
		err    error
	}
	got := make(chan answer, 1)
	go func() {
		index := r.Header.Get(api.HeaderIndex)
		if index == "0" {
			index = "1" // no call ever: wait for past 1 (as the UI does), 0 would not block
		}
		for rounds := 1; rounds <= 20; rounds++ {
			resp, err := http.Get(c.URL(0) + "/v1/calls?state=FINISHED&order=desc&limit=5&wait=2m&index=" + index)
			if err != nil {
				got <- answer{err: err}
				return
			}
			var calls []*api.Call
			err = json.NewDecoder(resp.Body).Decode(&calls)
			resp.Body.Close()
			next := resp.Header.Get(api.HeaderIndex)
			if err != nil || next == index {
				got <- answer{err: fmt.Errorf("round %d: index %s -> %s (a blocking answer must come with a newer index): %v", rounds, index, next, err)}
				return
			}
			if len(calls) > 0 {
				got <- answer{calls: calls, rounds: rounds}
				return
			}
			index = next
		}
		got <- answer{err: fmt.Errorf("no finished call after 20 changes")}
	}()
	id := call(t, c.Client(0), "ok", "")
	a := <-got
	if a.err != nil {
		t.Fatal(a.err)
	}
	if len(a.calls) != 1 || a.calls[0].ID != id || a.calls[0].State != api.StateFinished {
		t.Fatalf("blocking list answered %v, want [%s] finished", callIDs(a.calls), id)
	}
	t.Logf("seen finished after %d blocking answers", a.rounds)
}

// GET /v1/functions pages by name and adds the calls per state on ask.
func TestListFunctionsStatsAndPages(t *testing.T) {
	c := servertest.NewCluster(t, 1, servertest.Options{})
	c.WaitForLeader()
	for i := range 5 {
		createFn(t, c.Client(0), fmt.Sprintf("fn-%d", i), "echo", "hi")
	}
	do(t, http.MethodPost, c.URL(0)+"/v1/functions/fn-3/call?sync=true", "", "").want(t, 200)
	get := func(q string) []*api.Function {
		var out []*api.Function
		r := do(t, http.MethodGet, c.URL(0)+"/v1/functions?"+q, "", nil).want(t, 200)
		if err := json.Unmarshal(r.Body, &out); err != nil {
			t.Fatal(err)
		}
		return out
	}
	names := func(fs []*api.Function) (out []string) {
		for _, f := range fs {
			out = append(out, f.Name)
		}
		return out
	}
	if got := names(get("limit=2&after=fn-1")); !slices.Equal(got, []string{"fn-2", "fn-3"}) {
		t.Fatalf("page after fn-1: %v", got)
	}
	fs := get("stats=true&name=fn-3")
	if len(fs) != 1 || fs[0].Stats == nil || fs[0].Stats.Finished != 1 {
		t.Fatalf("fn-3 with stats: %+v", fs)
	}
	if fs := get("limit=1"); fs[0].Stats != nil {
		t.Fatalf("stats without ?stats=true: %+v", fs[0].Stats)
	}
	do(t, http.MethodGet, c.URL(0)+"/v1/functions?limit=-1", "", nil).want(t, 400)
}

// GET /v1/queue shows an admin every user's queue and quota, and anyone
// else only their own.
func TestQueue(t *testing.T) {
	c := servertest.NewCluster(t, 1, servertest.Options{ACL: true, Configure: withQuota(5, 0)})
	c.WaitForLeader()
	alice, _ := newUser(t, c, 0, "alice", 1, false)
	bob, _ := newUser(t, c, 0, "bob", 0, false)
	createFn(t, alice, "slow", "sleep")
	running := call(t, alice, "slow", "")
	for range 2 {
		call(t, alice, "slow", "")
	}
	waitRunning(t, c.Engine, running)
	queue := func(cl *api.Client) map[string]*api.UserQueue {
		out, _, err := cl.Status().Queue(ctx(t), nil)
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]*api.UserQueue{}
		for _, q := range out {
			m[q.User] = q
		}
		return m
	}
	all := queue(c.Client(0))
	if q := all["alice"]; q == nil || q.Running != 1 || q.Pending != 2 || q.Quota != 1 || q.StdinBytes != 0 {
		t.Fatalf("alice's queue %+v, want 1 running, 2 pending, quota 1", q)
	}
	if q := all["bob"]; q == nil || q.Quota != 5 || q.Running != 0 {
		t.Fatalf("bob's queue as the admin sees it: %+v, want the default quota 5", q)
	}
	if own := queue(bob); len(own) != 1 || own["bob"] == nil {
		t.Fatalf("bob's view %v: want only bob", own)
	}
	if own := queue(alice); len(own) != 1 || own["alice"] == nil || own["alice"].Pending != 2 {
		t.Fatalf("alice's view %v: want only alice", own)
	}
	c.Engine.ReleaseAll()
}
