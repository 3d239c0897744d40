package nomadjob_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	nomad "github.com/hashicorp/nomad/api"

	"github.com/hyperfunc/hyperfunc/api"
	"github.com/hyperfunc/hyperfunc/executor"
	"github.com/hyperfunc/hyperfunc/nomadjob"
	"github.com/hyperfunc/hyperfunc/nomadjob/nomadtest"
)

// fixture is one recorded exchange with Nomad 1.6.5.
type fixture struct {
	Request struct {
		Method string          `json:"method"`
		Path   string          `json:"path"`
		Body   json.RawMessage `json:"body"`
	} `json:"request"`
	Response struct {
		Status  int               `json:"status"`
		Headers map[string]string `json:"headers"`
		Body    json.RawMessage   `json:"body"`
	} `json:"response"`
}

// bodyBytes is the response body as Nomad sent it: JSON as is, a JSON string
// as its text (plain-text bodies were recorded as strings).
func (f *fixture) bodyBytes() []byte {
	var s string
	if strings.HasPrefix(f.Response.Headers["Content-Type"], "text/plain") && json.Unmarshal(f.Response.Body, &s) == nil {
		return []byte(s)
	}
	return f.Response.Body
}

// fixturesDir is the recorded exchanges, carried in the repo as test data
// (a copy of the project's shared/nomad-api-fixtures; see its README).
func fixturesDir(t *testing.T) string {
	t.Helper()
	dir := filepath.Join("testdata", "nomad-api-fixtures")
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		t.Fatalf("fixtures: %v", err)
	}
	return dir
}

func loadFixture(t *testing.T, name string) *fixture {
	t.Helper()
	matches, _ := filepath.Glob(filepath.Join(fixturesDir(t), name+"*.json"))
	if len(matches) != 1 {
		t.Fatalf("fixture %s: %d files", name, len(matches))
	}
	b, err := os.ReadFile(matches[0])
	if err != nil {
		t.Fatal(err)
	}
	var f fixture
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatalf("fixture %s: %v", name, err)
	}
	return &f
}

func TestFixtureOutcomes(t *testing.T) {
	cases := []struct {
		file   string
		kind   executor.Kind
		reason string
		exit   int
		msg    string
	}{
		{"11_", executor.Finished, "", 0, ""},
		{"25_", executor.Finished, "", 0, ""},
		{"32_", executor.Finished, "", 0, ""},
		{"20_", executor.Failed, api.ReasonExit, 3, "exit code 3"},
		{"22_", executor.Failed, api.ReasonImage, 0, "Driver Failure: Failed to pull `hf/does-not-exist:1`"},
		{"35_", executor.Failed, api.ReasonExecutor, 0, "Failed Artifact Download: failed to download artifact"},
	}
	for _, tc := range cases {
		f := loadFixture(t, tc.file)
		var a nomad.Allocation
		if err := json.Unmarshal(f.Response.Body, &a); err != nil {
			t.Fatalf("%s: %v", tc.file, err)
		}
		ev := nomadjob.Outcome(&a, nil, nil, 1<<20)
		if ev.Kind != tc.kind || ev.Reason != tc.reason || ev.ExitCode != tc.exit || !strings.HasPrefix(ev.Message, tc.msg) {
			t.Errorf("%s: got %v %q exit %d %q", tc.file, ev.Kind, ev.Reason, ev.ExitCode, ev.Message)
		}
	}
	// The same allocation with an OOM kill, a lost node, and shim results.
	f := loadFixture(t, "20_")
	var a nomad.Allocation
	_ = json.Unmarshal(f.Response.Body, &a)
	term := a.TaskStates["fn"].Events[3]
	term.Details["oom_killed"] = "true"
	if ev := nomadjob.Outcome(&a, nil, nil, 1<<20); ev.Reason != api.ReasonExit || !strings.Contains(ev.Message, "OOM killed") || !strings.Contains(ev.Message, "64 MB") {
		t.Errorf("oom: %+v", ev)
	}
	term.Details["oom_killed"] = "false"
	a.ClientStatus = nomad.AllocClientStatusLost
	if ev := nomadjob.Outcome(&a, nil, nil, 1<<20); ev.Reason != api.ReasonLost || ev.Message != "allocation lost: node vm went down" {
		t.Errorf("lost: %+v", ev)
	}
}

func TestDecodeResult(t *testing.T) {
	if _, err := nomadjob.DecodeResult([]byte(`stat /opt/nomad/data/alloc/x/alloc/data/nope: no such file or directory`)); err == nil {
		t.Fatal("fs/cat's error text decoded as a result")
	}
	r, err := nomadjob.DecodeResult([]byte(`{"v":1,"call_id":"c","exit_code":0,"truncated":true,"stdout_bytes":9}`))
	if err != nil || !r.Truncated {
		t.Fatalf("%+v %v", r, err)
	}
}

// replay serves the fixtures' responses for their requests.
func replay(t *testing.T, names ...string) *httptest.Server {
	t.Helper()
	byPath := map[string]*fixture{}
	for _, n := range names {
		f := loadFixture(t, n)
		byPath[replayKey(f.Request.Method, f.Request.Path)] = f
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f := byPath[replayKey(r.Method, r.URL.RequestURI())]
		if f == nil {
			http.Error(w, "no fixture for "+r.URL.EscapedPath(), http.StatusNotFound)
			return
		}
		for k, v := range f.Response.Headers {
			w.Header().Set(k, v)
		}
		w.WriteHeader(f.Response.Status)
		_, _ = w.Write(f.bodyBytes())
	}))
	t.Cleanup(srv.Close)
	return srv
}

// replayKey is a request's method (PUT and POST alike), path and fs "path"
// parameter.
func replayKey(method, uri string) string {
	if method == http.MethodPost {
		method = http.MethodPut
	}
	p, q, _ := strings.Cut(uri, "?")
	v, _ := url.ParseQuery(q)
	if fp := v.Get("path"); fp != "" {
		p += "?path=" + fp
	}
	return method + " " + p
}

func replayNomad(t *testing.T, names ...string) nomadjob.Nomad {
	srv := replay(t, names...)
	c, err := nomad.NewClient(&nomad.Config{Address: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	return nomadjob.NewNomad(c)
}

func TestFixtureReplayThroughClient(t *testing.T) {
	n := replayNomad(t, "00_agent", "04_", "10_", "11_", "12_", "14_", "15_", "16_", "18_", "23_", "24_")
	c := ctx(t)
	if l, err := n.Leader(c); err != nil || l != "127.0.0.1:4647" {
		t.Fatalf("leader %q %v", l, err)
	}
	child, err := n.Dispatch(c, "hf-fixture-ok", map[string]string{"call_id": "call-0001"}, []byte("hello fixture\n"), "call-0001")
	if err != nil || child != "hf-fixture-ok/dispatch-1795651834-6a19cc9e" {
		t.Fatalf("dispatch %q %v", child, err)
	}
	allocs, index, err := n.JobAllocations(c, child, 0, 0)
	if err != nil || len(allocs) != 1 || index != 894 || allocs[0].ClientStatus != "complete" {
		t.Fatalf("allocations %v %d %v", allocs, index, err)
	}
	a, err := n.Allocation(c, allocs[0].ID)
	if err != nil || a.TaskStates["fn"].Events[3].Type != nomad.TaskTerminated {
		t.Fatalf("allocation %v", err)
	}
	out, err := n.Cat(c, a.ID, "alloc/data/stdout", 1<<20)
	if err != nil || string(out) != "hello fixture\n" {
		t.Fatalf("cat %q %v", out, err)
	}
	// fs/cat of a missing file: HTTP 200 with an error text (fixture 16),
	// which is why the executor stats first.
	out, err = n.Cat(c, a.ID, "alloc/data/nope", 1<<20)
	if err != nil || !strings.Contains(string(out), "no such file or directory") {
		t.Fatalf("cat missing %q %v", out, err)
	}
	se, err := n.Logs(c, a.ID, "fn", "stderr", 4096)
	if err != nil || string(se) != "to-stderr\n" {
		t.Fatalf("stderr %q %v", se, err)
	}
	job, err := n.JobInfo(c, child)
	if err != nil || *job.DispatchIdempotencyToken != "call-0001" || job.Meta["call_id"] != "call-0001" || string(job.Payload) != "hello fixture\n" {
		t.Fatalf("job %v", err)
	}
	stubs, err := n.ListJobs(c, "hf-fixture-ok/dispatch")
	if err != nil || len(stubs) != 1 || stubs[0].ParentID != "hf-fixture-ok" {
		t.Fatalf("list %v", err)
	}
	if err := n.DeregisterJob(c, child, true); err != nil {
		t.Fatalf("purge %v", err)
	}
	// Framed logs (fixture 12) carry the same bytes as plain ones (13).
	var frame nomad.StreamFrame
	if err := json.Unmarshal(loadFixture(t, "12_").Response.Body, &frame); err != nil {
		t.Fatal(err)
	}
	if string(frame.Data) != string(loadFixture(t, "13_").bodyBytes()) || frame.File != "alloc/logs/fn.stdout.0" {
		t.Fatalf("frame %q", frame.Data)
	}
}

func TestFixtureErrorsClassified(t *testing.T) {
	c := ctx(t)
	for _, tc := range []struct{ fixture, job, text string }{
		{"06_", "hf-fixture-ok", "Payload exceeds maximum size; 16385 > 16384"},
		{"07_", "hf-fixture-ok", "Dispatch request included unpermitted metadata keys: [other]"},
		{"08_", "hf-fixture-ok", "Dispatch did not provide required meta keys: [call_id]"},
		{"26_", "hf-nope", "parameterized job not found"},
	} {
		n := replayNomad(t, tc.fixture)
		_, err := n.Dispatch(c, tc.job, map[string]string{"call_id": "x"}, nil, "x")
		if !errors.Is(err, nomadjob.ErrRefused) || nomadjob.IsUnavailable(err) || !strings.Contains(err.Error(), tc.text) {
			t.Errorf("%s: %v", tc.job, err)
		}
	}
	// A Nomad without a leader, and no Nomad at all, are retryable.
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(500)
		_, _ = w.Write([]byte("No cluster leader"))
	}))
	defer down.Close()
	dc, _ := nomad.NewClient(&nomad.Config{Address: down.URL})
	if _, err := nomadjob.NewNomad(dc).Dispatch(c, "hf-x", nil, nil, "t"); !nomadjob.IsUnavailable(err) {
		t.Errorf("no leader: %v", err)
	}
	gone := httptest.NewServer(http.NotFoundHandler())
	gone.Close()
	gc, _ := nomad.NewClient(&nomad.Config{Address: gone.URL})
	var ne *nomadjob.Error
	if _, err := nomadjob.NewNomad(gc).Leader(c); !nomadjob.IsUnavailable(err) || !errors.As(err, &ne) || ne.Status != 0 {
		t.Errorf("unreachable: %v", err)
	}
}

func TestFixtureEventStream(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(fixturesDir(t), "27_event_stream_allocation_job.ndjson"))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if got := r.URL.Query()["topic"]; len(got) != 1 || got[0] != "Allocation" {
			t.Errorf("topics %v", got)
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(raw)
	}))
	defer srv.Close()
	c, _ := nomad.NewClient(&nomad.Config{Address: srv.URL})
	ch, err := nomadjob.NewNomad(c).EventStream(ctx(t), 0)
	if err != nil {
		t.Fatal(err)
	}
	statuses := map[string]string{}
	allocEvents, ended := 0, false
	for evs := range ch {
		if evs.Err != nil {
			ended = true // the recording ends with a non-JSON line
			break
		}
		for i := range evs.Events {
			ev := &evs.Events[i]
			if ev.Topic != nomad.TopicAllocation {
				continue
			}
			a, err := nomadjob.DecodeAllocationEvent(ev)
			if err != nil {
				t.Fatalf("index %d: %v", ev.Index, err)
			}
			if ev.FilterKeys[0] != a.JobID {
				t.Fatalf("FilterKeys[0] %q != JobID %q", ev.FilterKeys[0], a.JobID)
			}
			allocEvents++
			statuses[a.JobID] = a.ClientStatus
		}
	}
	if allocEvents != 59 || !ended {
		t.Fatalf("%d allocation events, ended %v", allocEvents, ended)
	}
	if statuses["hf-fixture-noimage/dispatch-1795651835-487adc0e"] != "failed" || statuses["hf-fixture-ok/dispatch-1795651834-6a19cc9e"] != "complete" {
		t.Fatalf("statuses %v", statuses)
	}
}

// TestDoubleSpeaksFixtures sends the fixtures' requests to the double and
// compares what it answers with what Nomad answered.
func TestDoubleSpeaksFixtures(t *testing.T) {
	srv := nomadtest.New(t)
	send := func(f *fixture) (*http.Response, []byte) {
		req, _ := http.NewRequest(f.Request.Method, srv.URL+f.Request.Path, bytes.NewReader(f.Request.Body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var buf bytes.Buffer
		_, _ = buf.ReadFrom(resp.Body)
		return resp, buf.Bytes()
	}
	keys := func(b []byte) []string {
		var m map[string]any
		_ = json.Unmarshal(b, &m)
		var ks []string
		for k := range m {
			ks = append(ks, k)
		}
		sort.Strings(ks)
		return ks
	}
	// Register (01), dispatch (04), the same token again (05).
	for _, name := range []string{"01_", "04_", "05_"} {
		f := loadFixture(t, name)
		resp, body := send(f)
		if resp.StatusCode != f.Response.Status || resp.Header.Get("Content-Type") != "application/json" || resp.Header.Get("X-Nomad-Index") == "" {
			t.Fatalf("%s: %d %v", name, resp.StatusCode, resp.Header)
		}
		if got, want := keys(body), keys(f.Response.Body); strings.Join(got, ",") != strings.Join(want, ",") {
			t.Fatalf("%s: keys %v, Nomad %v", name, got, want)
		}
	}
	// Errors: status, content type and text exactly as Nomad's.
	for _, name := range []string{"06_", "07_", "08_", "26_"} {
		f := loadFixture(t, name)
		resp, body := send(f)
		if resp.StatusCode != f.Response.Status || resp.Header.Get("Content-Type") != f.Response.Headers["Content-Type"] || string(body) != string(f.bodyBytes()) {
			t.Errorf("%s: %d %q %q, Nomad %d %q", name, resp.StatusCode, resp.Header.Get("Content-Type"), body, f.Response.Status, f.bodyBytes())
		}
	}
	// Leader.
	resp, body := send(loadFixture(t, "00_agent"))
	if resp.StatusCode != 200 || strings.TrimSpace(string(body)) != `"127.0.0.1:4647"` {
		t.Fatalf("leader %s", body)
	}
	// fs/cat of a missing file answers 200 with an error text (16).
	var child struct{ DispatchedJobID string }
	_, body = send(loadFixture(t, "04_"))
	_ = json.Unmarshal(body, &child)
	var allocs []nomad.AllocationListStub
	waitFor(t, hang, "allocation", func() bool {
		r, err := http.Get(srv.URL + "/v1/job/" + strings.ReplaceAll(child.DispatchedJobID, "/", "%2F") + "/allocations")
		if err != nil {
			return false
		}
		defer r.Body.Close()
		_ = json.NewDecoder(r.Body).Decode(&allocs)
		return len(allocs) == 1 && r.Header.Get("X-Nomad-Index") != "" && r.Header.Get("X-Nomad-Knownleader") == "true"
	})
	r, err := http.Get(srv.URL + "/v1/client/fs/cat/" + allocs[0].ID + "?path=alloc/data/nope")
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	_, _ = buf.ReadFrom(r.Body)
	r.Body.Close()
	if r.StatusCode != 200 || !strings.HasPrefix(buf.String(), "stat /opt/nomad/data/alloc/"+allocs[0].ID+"/alloc/data/nope: no such file or directory") {
		t.Fatalf("cat missing: %d %q", r.StatusCode, buf.String())
	}
}
