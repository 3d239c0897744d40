package server_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hyperfunc/hyperfunc/api"
	"github.com/hyperfunc/hyperfunc/executor"
	"github.com/hyperfunc/hyperfunc/server"
	"github.com/hyperfunc/hyperfunc/server/servertest"
)

// --warm is 0..api.MaxWarm: the bound is kept, one past it (or below 0)
// is a 400 that says why, on create and on update; inspect shows it.
func TestFunctionWarmBounds(t *testing.T) {
	c := servertest.NewCluster(t, 1, servertest.Options{})
	url := c.URL(0) + "/v1/functions"
	for _, n := range []int{api.MaxWarm + 1, -1} {
		r := do(t, http.MethodPost, url, "", map[string]any{"name": "f", "image": "busybox", "warm": n}).want(t, 400)
		if msg := r.errorBody(t); !strings.Contains(msg, "invalid warm") {
			t.Errorf("warm %d: %q", n, msg)
		}
	}
	do(t, http.MethodPost, url, "", map[string]any{"name": "f", "image": "busybox", "warm": api.MaxWarm}).want(t, 201)
	if w := warmOf(t, url+"/f"); w != api.MaxWarm {
		t.Fatalf("inspect: warm %d, want %d", w, api.MaxWarm)
	}
	r := do(t, http.MethodPost, url+"/f", "", map[string]any{"warm": api.MaxWarm + 1}).want(t, 400)
	if msg := r.errorBody(t); !strings.Contains(msg, "invalid warm") {
		t.Errorf("update: %q", msg)
	}
	do(t, http.MethodPost, url+"/f", "", map[string]any{"warm": 0}).want(t, 200)
	if w := warmOf(t, url+"/f"); w != 0 {
		t.Fatalf("inspect after update: warm %d, want 0", w)
	}
}

func warmOf(t *testing.T, url string) int {
	t.Helper()
	var f api.Function
	if err := json.Unmarshal(do(t, http.MethodGet, url, "", nil).want(t, 200).Body, &f); err != nil {
		t.Fatal(err)
	}
	return f.Warm
}

// wantTargets waits until x's last SetWarm is want (function ID -> N), and
// returns it.
func wantTargets(t *testing.T, x *servertest.FakeExecutor, want map[string]int) []executor.WarmTarget {
	t.Helper()
	var got []executor.WarmTarget
	servertest.Eventually(t, 30*time.Second, func() error {
		ts, set := x.WarmTargets()
		got = ts
		m := map[string]int{}
		for _, t := range ts {
			m[t.Function.ID] = t.N
		}
		if !set || fmt.Sprint(m) != fmt.Sprint(want) {
			return fmt.Errorf("targets %v (set %v), want %v", m, set, want)
		}
		return nil
	})
	return got
}

// The leader keeps the executor's pools in line with the functions: a
// create with --warm sets one, an update sets the new version (the
// executor drains the old), a delete drains it, the user cap holds, and
// a new leader sets the pools again after the old one is killed.
func TestWarmPoolsFollowFunctionsAndLeader(t *testing.T) {
	c := servertest.NewCluster(t, 3, servertest.Options{Configure: func(_ int, cfg *server.Config) {
		cfg.WarmUserCap = 3
	}})
	lead := c.LeaderIndex()
	x := c.Node(lead).Exec
	url := c.URL(lead) + "/v1/functions"
	do(t, http.MethodPost, url, "", map[string]any{"name": "a", "image": "busybox", "warm": 2}).want(t, 201)
	wantTargets(t, x, map[string]int{"default/a": 2})
	// One past the user cap (3): b gets what is left.
	do(t, http.MethodPost, url, "", map[string]any{"name": "b", "image": "busybox", "warm": 2}).want(t, 201)
	wantTargets(t, x, map[string]int{"default/a": 2, "default/b": 1})
	do(t, http.MethodPost, url+"/a", "", map[string]any{"image": "busybox:v2"}).want(t, 200)
	servertest.Eventually(t, 30*time.Second, func() error {
		ts, _ := x.WarmTargets()
		for _, t := range ts {
			if t.Function.ID == "default/a" && t.Function.Image == "busybox:v2" {
				return nil
			}
		}
		return fmt.Errorf("targets %+v do not have the new image", ts)
	})
	do(t, http.MethodDelete, url+"/b", "", nil).want(t, 204)
	wantTargets(t, x, map[string]int{"default/a": 2})
	// The executor's pools are on /metrics (the fake reports its targets
	// as ready).
	fams := scrape(t, c.URL(lead))
	for _, n := range []string{"hyperfunc_warm_hits_total", "hyperfunc_warm_misses_total"} {
		if fams[n] == nil {
			t.Errorf("/metrics has no %s", n)
		}
	}
	if f := fams["hyperfunc_warm_ready"]; f == nil || len(f.Metric) != 1 || f.Metric[0].GetGauge().GetValue() != 2 ||
		f.Metric[0].Label[0].GetValue() != "default/a" {
		t.Errorf("hyperfunc_warm_ready: %v", f)
	}

	c.Kill(lead)
	if x.WarmDrops() == 0 {
		t.Fatal("the killed leader did not drop its pools")
	}
	next := c.WaitForLeader()
	ts := wantTargets(t, c.Node(next).Exec, map[string]int{"default/a": 2})
	if ts[0].Function.Image != "busybox:v2" {
		t.Fatalf("new leader's target %+v", ts[0].Function)
	}
}
