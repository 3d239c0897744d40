package server_test

import (
	"bytes"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/hyperfunc/hyperfunc/server/servertest"
)

// scrape reads /metrics into metric families.
func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	r := do(t, http.MethodGet, url+"/metrics", "", nil).want(t, 200)
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(r.Body))
	if err != nil {
		t.Fatalf("parsing /metrics: %v", err)
	}
	return fams
}

// scrapeOnceEnded scrapes until calls_ended_total sums to n: the leader
// counts an end after its commit, which also wakes the sync caller, so a
// scrape right after the answer may come first.
func scrapeOnceEnded(t *testing.T, url string, n float64) map[string]*dto.MetricFamily {
	t.Helper()
	deadline := time.Now().Add(hangGuard)
	for {
		fams := scrape(t, url)
		sum := 0.0
		if f := fams["hyperfunc_calls_ended_total"]; f != nil {
			for _, m := range f.Metric {
				sum += m.GetCounter().GetValue()
			}
		}
		if sum == n {
			return fams
		}
		if time.Now().After(deadline) {
			t.Fatalf("calls_ended_total sums to %v, want %v", sum, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// find answers the metric of a family whose labels include want.
func find(fams map[string]*dto.MetricFamily, name string, want map[string]string) *dto.Metric {
	f := fams[name]
	if f == nil {
		return nil
	}
	for _, m := range f.Metric {
		ok := true
		for k, v := range want {
			found := false
			for _, l := range m.Label {
				if l.GetName() == k && l.GetValue() == v {
					found = true
				}
			}
			ok = ok && found
		}
		if ok {
			return m
		}
	}
	return nil
}

// After known calls, /metrics counts them by function, state and reason,
// has a queue-wait and a run-time observation for each that ran, and
// shows the cache bytes and the (empty) queues from the state.
func TestCallMetrics(t *testing.T) {
	c, _, _ := okAndBad(t, 3, 2)
	fams := scrapeOnceEnded(t, c.URL(0), 5)
	for _, tc := range []struct {
		fn, state, reason string
		want              float64
	}{{"ok", "FINISHED", "", 3}, {"bad", "FAILED", "exit", 2}} {
		m := find(fams, "hyperfunc_calls_ended_total", map[string]string{"owner": "default", "function": tc.fn, "state": tc.state, "reason": tc.reason})
		if m == nil || m.GetCounter().GetValue() != tc.want {
			t.Errorf("calls_ended_total{%s,%s,%s} = %v, want %v", tc.fn, tc.state, tc.reason, m, tc.want)
		}
	}
	for _, h := range []string{"hyperfunc_call_queue_seconds", "hyperfunc_call_run_seconds"} {
		for fn, n := range map[string]uint64{"ok": 3, "bad": 2} {
			m := find(fams, h, map[string]string{"owner": "default", "function": fn})
			if m == nil || m.GetHistogram().GetSampleCount() != n {
				t.Errorf("%s{function=%s} = %v, want %d observations", h, fn, m, n)
				continue
			}
			// Buckets are cumulative and hold every observation by the
			// last one (an hour; these calls take milliseconds).
			var prev uint64
			bs := m.GetHistogram().GetBucket()
			for _, b := range bs {
				if b.GetCumulativeCount() < prev {
					t.Errorf("%s{function=%s} buckets not cumulative: %v", h, fn, bs)
				}
				prev = b.GetCumulativeCount()
			}
			if prev != n {
				t.Errorf("%s{function=%s}: last bucket holds %d of %d", h, fn, prev, n)
			}
		}
	}
	if m := find(fams, "hyperfunc_function_cache_bytes", map[string]string{"function": "ok", "cache": "output"}); m == nil || m.GetGauge().GetValue() < 9 {
		t.Errorf("output cache bytes of ok: %v, want at least 3 outputs of 3 bytes", m)
	}
	if m := find(fams, "hyperfunc_function_calls", map[string]string{"function": "ok", "state": "pending"}); m == nil || m.GetGauge().GetValue() != 0 {
		t.Errorf("pending calls of ok: %v, want 0", m)
	}
	if m := find(fams, "hyperfunc_function_cache_bytes", map[string]string{"function": "bad", "cache": "log"}); m == nil || m.GetGauge().GetValue() <= 0 {
		t.Errorf("log cache bytes of bad: %v, want its CALL and FAILED events", m)
	}
	for _, st := range []string{"pending", "running"} {
		if m := find(fams, "hyperfunc_user_calls", map[string]string{"owner": "default", "state": st}); m == nil || m.GetGauge().GetValue() != 0 {
			t.Errorf("%s calls of user default: %v, want 0", st, m)
		}
	}
}

// Every metric the Grafana dashboard in jobspecs reads is one the agent
// serves, so the dashboard cannot drift from the code.
func TestDashboardMetricsExist(t *testing.T) {
	b, err := os.ReadFile("../jobspecs/grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	c := servertest.NewCluster(t, 1, servertest.Options{})
	c.WaitForLeader()
	createFn(t, c.Client(0), "ok", "echo", "hi")
	do(t, http.MethodPost, c.URL(0)+"/v1/functions/ok/call?sync=true", "", "").want(t, 200)
	fams := scrapeOnceEnded(t, c.URL(0), 1)
	names := regexp.MustCompile(`hyperfunc_[a-z_]+`).FindAllString(string(b), -1)
	if len(names) == 0 {
		t.Fatal("the dashboard reads no hyperfunc metric")
	}
	for _, n := range names {
		base := strings.TrimSuffix(n, "_bucket")
		if fams[base] == nil {
			t.Errorf("the dashboard reads %s, which /metrics does not serve", n)
		}
	}
}
