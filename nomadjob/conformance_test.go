package nomadjob_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	nomad "github.com/hashicorp/nomad/api"

	"github.com/hyperfunc/hyperfunc/executor"
	"github.com/hyperfunc/hyperfunc/nomadjob"
	"github.com/hyperfunc/hyperfunc/nomadjob/nomadtest"
)

// The conformance suite runs the same exchanges against the double and the
// real agent. Each exchange is held to what a real Nomad 1.6.5 answers
// (status, text or JSON, the text itself or the JSON keys), and the two
// targets' normalized answers must be equal.

// answer is one normalized exchange.
type answer struct {
	Name   string
	Status int
	Kind   string // "json" or "text"
	Body   string // text (normalized) or the sorted top-level JSON keys
}

type target struct {
	t      *testing.T
	addr   string
	ex     *nomadjob.Executor
	ans    []answer
	ids    map[string]string // real ID -> placeholder
	parent string
}

func (g *target) do(name, method, path string, body []byte) (int, []byte) {
	g.t.Helper()
	req, err := http.NewRequest(method, g.addr+path, bytes.NewReader(body))
	if err != nil {
		g.t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		g.t.Fatalf("%s: %v", name, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	a := answer{Name: name, Status: resp.StatusCode, Kind: "text"}
	var obj any
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") && json.Unmarshal(b, &obj) == nil {
		a.Kind = "json"
		if m, ok := obj.(map[string]any); ok {
			var keys []string
			for k := range m {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			a.Body = strings.Join(keys, ",")
		} else {
			a.Body = fmt.Sprintf("%T", obj)
		}
	} else {
		a.Body = g.normalize(string(b))
	}
	g.ans = append(g.ans, a)
	return resp.StatusCode, b
}

var statPath = regexp.MustCompile(`stat \S+: no such file or directory`)

func (g *target) normalize(s string) string {
	for real, ph := range g.ids {
		s = strings.ReplaceAll(s, real, ph)
	}
	return statPath.ReplaceAllString(s, "stat <path>: no such file or directory")
}

// expect checks the last answer against the real agent's.
func (g *target) expect(status int, kind, body string) {
	g.t.Helper()
	a := g.ans[len(g.ans)-1]
	if a.Status != status || a.Kind != kind || (body != "*" && a.Body != body) {
		g.t.Errorf("%s: got %d %s %q, want %d %s %q", a.Name, a.Status, a.Kind, a.Body, status, kind, body)
	}
}

func (g *target) dispatch(name, job string, meta map[string]string, payload []byte, token string) string {
	g.t.Helper()
	b, _ := json.Marshal(nomad.JobDispatchRequest{JobID: job, Meta: meta, Payload: payload})
	q := ""
	if token != "" {
		q = "?idempotency_token=" + url.QueryEscape(token)
	}
	status, body := g.do(name, "POST", "/v1/job/"+url.PathEscape(job)+"/dispatch"+q, b)
	if status != 200 {
		return ""
	}
	var r struct{ DispatchedJobID string }
	_ = json.Unmarshal(body, &r)
	return r.DispatchedJobID
}

// waitAlloc polls the child's allocations until one is terminal.
func (g *target) waitAlloc(child string) *nomad.AllocationListStub {
	g.t.Helper()
	var al *nomad.AllocationListStub
	waitFor(g.t, 3*time.Minute, "a terminal allocation of "+child, func() bool {
		resp, err := http.Get(g.addr + "/v1/job/" + url.PathEscape(child) + "/allocations")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var as []*nomad.AllocationListStub
		if json.NewDecoder(resp.Body).Decode(&as) != nil {
			return false
		}
		for _, a := range as {
			if a.ClientStatus == "complete" || a.ClientStatus == "failed" {
				al = a
				return true
			}
		}
		return false
	})
	return al
}

func runConformance(t *testing.T, addr, shimVolume, image string) []answer {
	fe := nomadtest.NewFrontend(t, nomadjob.DefaultShimArtifactPath, realShimArchive(t))
	ex, err := nomadjob.New(nomadjob.Config{Address: addr, ArtifactBaseURL: fe.URL, ShimSHA256: fe.ShimSHA256, ShimVolume: shimVolume, ClusterID: "conformance"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ex.Close() })
	run := fmt.Sprint(time.Now().UnixNano())
	fn := executor.Function{ID: "conf/cat-" + run, Owner: "conf", Name: "cat-" + run, Image: image, Command: []string{"cat"}}
	g := &target{t: t, addr: addr, ex: ex, ids: map[string]string{}}
	job := nomadjob.JobID("conformance", fn)
	g.ids[job] = "<job>"
	defer func() { g.do("purge parent", "DELETE", "/v1/job/"+url.PathEscape(job)+"?purge=true", nil) }()

	b, _ := json.Marshal(map[string]any{"Job": ex.FunctionJob(fn, false)})
	g.do("register", "PUT", "/v1/jobs", b)
	g.expect(200, "json", "*")

	envelope := func(stdin string) []byte {
		b, err := json.Marshal(nomadjob.BuildEnvelope(executor.Spec{CallID: "c", Function: fn, Stdin: []byte(stdin)}, 1<<20, true))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	g.dispatch("dispatch without required meta", job, nil, envelope("x"), "")
	g.expect(500, "text", "Dispatch did not provide required meta keys: [call_id]")
	g.dispatch("dispatch with unpermitted meta", job, map[string]string{"call_id": "c", "other": "x"}, envelope("x"), "")
	g.expect(500, "text", "Dispatch request included unpermitted metadata keys: [other]")
	g.dispatch("dispatch payload over 16 KiB", job, map[string]string{"call_id": "c"}, bytes.Repeat([]byte("x"), 16385), "")
	g.expect(500, "text", "Payload exceeds maximum size; 16385 > 16384")
	g.dispatch("dispatch unknown job", "hf-conformance-none-"+run, map[string]string{"call_id": "c"}, nil, "")
	g.expect(500, "text", "parameterized job not found")

	token := "call-" + run
	child := g.dispatch("dispatch", job, map[string]string{"call_id": token}, envelope("conformance\n"), token)
	g.expect(200, "json", "*")
	if !strings.HasPrefix(child, job+"/dispatch-") {
		t.Fatalf("dispatched %q", child)
	}
	g.ids[child] = "<child>"
	// The child inherits the parent's meta (hf_cluster: orphan sweeps rely
	// on it), the dispatch meta merged in.
	_, body := g.do("child job", "GET", "/v1/job/"+url.PathEscape(child), nil)
	// The whole job's keys differ: the double encodes nomad/api's Job, the
	// agent its internal struct (fields the client never reads). Status
	// and kind are compared; the meta the executor relies on is checked.
	g.ans[len(g.ans)-1].Body = "<job>"
	g.expect(200, "json", "<job>")
	var cj nomad.Job
	if err := json.Unmarshal(body, &cj); err != nil || cj.Meta[nomadjob.MetaCluster] != "conformance" || cj.Meta["call_id"] != token {
		t.Errorf("child meta: %v (%v)", cj.Meta, err)
	}
	if again := g.dispatch("dispatch same token (alive)", job, map[string]string{"call_id": token}, envelope("conformance\n"), token); again != child {
		t.Errorf("same token while alive: %q, want %q", again, child)
	}
	al := g.waitAlloc(child)
	g.ids[al.ID] = "<alloc>"
	if al.ClientStatus != "complete" {
		t.Fatalf("allocation %s", al.ClientStatus)
	}
	fsPath := func(op, alloc, path string) string {
		return "/v1/client/fs/" + op + "/" + alloc + "?path=" + url.QueryEscape(path)
	}
	g.do("fs/cat stdout", "GET", fsPath("cat", al.ID, nomadjob.StdoutFilePath), nil)
	g.expect(200, "text", "conformance\n")
	g.do("fs/stat result", "GET", fsPath("stat", al.ID, nomadjob.ResultFilePath), nil)
	g.expect(200, "json", "*")
	g.do("fs/stat missing file", "GET", fsPath("stat", al.ID, "alloc/data/none"), nil)
	g.expect(404, "text", "stat <path>: no such file or directory")
	g.do("fs/cat missing file", "GET", fsPath("cat", al.ID, "alloc/data/none"), nil)
	g.expect(200, "text", "stat <path>: no such file or directory")
	unknown := "00000000-0000-0000-0000-000000000000"
	g.do("fs/cat unknown allocation", "GET", fsPath("cat", unknown, "alloc/data/stdout"), nil)
	g.expect(200, "text", `Unknown allocation "`+unknown+`"`)
	g.do("fs/stat unknown allocation", "GET", fsPath("stat", unknown, "alloc/data/stdout"), nil)
	g.expect(404, "text", `Unknown allocation "`+unknown+`"`)
	g.do("allocation unknown", "GET", "/v1/allocation/"+unknown, nil)
	g.expect(404, "text", "alloc not found")
	g.do("job unknown", "GET", "/v1/job/hf-conformance-none-"+run, nil)
	g.expect(404, "text", "job not found")
	g.do("allocations of unknown job", "GET", "/v1/job/hf-conformance-none-"+run+"/allocations", nil)
	g.expect(200, "json", "[]interface {}")
	g.do("delete unknown job", "DELETE", "/v1/job/hf-conformance-none-"+run+"?purge=true", nil)
	g.expect(200, "json", "*")
	if a := g.ans[len(g.ans)-1]; !strings.Contains(a.Body, "JobModifyIndex") {
		t.Errorf("delete unknown job: %q", a.Body)
	}

	// A stopped child keeps its token; a purged one frees it.
	g.do("stop child", "DELETE", "/v1/job/"+url.PathEscape(child), nil)
	g.expect(200, "json", "*")
	if again := g.dispatch("dispatch same token (stopped)", job, map[string]string{"call_id": token}, envelope("conformance\n"), token); again != child {
		t.Errorf("same token after stop: %q, want the stopped child %q", again, child)
	}
	g.do("purge child", "DELETE", "/v1/job/"+url.PathEscape(child)+"?purge=true", nil)
	g.expect(200, "json", "*")
	next := g.dispatch("dispatch same token (purged)", job, map[string]string{"call_id": token}, envelope("conformance\n"), token)
	if next == "" || next == child {
		t.Errorf("same token after purge: %q, want a new child (old %q)", next, child)
	}
	g.ids[next] = "<child2>"
	g.waitAlloc(next)
	g.do("purge child 2", "DELETE", "/v1/job/"+url.PathEscape(next)+"?purge=true", nil)
	g.expect(200, "json", "*")
	variableExchanges(g, job)
	return g.ans
}

// variableExchanges: the Nomad variable endpoints as the warm claim uses
// them (warm_claim.go), and the ACL endpoint on an agent without ACLs.
func variableExchanges(g *target, job string) {
	path := "nomad/jobs/" + job + "/dispatch-conformance"
	vbody := func(items map[string]string) []byte {
		b, _ := json.Marshal(nomad.Variable{Path: path, Items: items})
		return b
	}
	defer g.do("variable cleanup", "DELETE", "/v1/var/"+path, nil)
	g.do("variable read missing", "GET", "/v1/var/"+path, nil)
	g.expect(404, "text", "variable not found")
	g.do("variable create (cas=0)", "PUT", "/v1/var/"+path+"?cas=0", vbody(map[string]string{"envelope": "{}", "call_id": "a"}))
	g.expect(200, "json", "CreateIndex,CreateTime,Items,ModifyIndex,ModifyTime,Namespace,Path")
	// The conflict's body is the existing variable's JSON, sent as
	// text/plain: compared after decoding.
	_, b := g.do("variable create again (cas=0): conflict", "PUT", "/v1/var/"+path+"?cas=0", vbody(map[string]string{"envelope": "{}", "call_id": "b"}))
	g.ans[len(g.ans)-1].Body = "<variable>"
	g.expect(409, "text", "<variable>")
	var conflict nomad.Variable
	if err := json.Unmarshal(b, &conflict); err != nil || conflict.Items["call_id"] != "a" {
		g.t.Errorf("conflict answer: %s (%v), want the first writer's variable", b, err)
	}
	g.do("variable read", "GET", "/v1/var/"+path, nil)
	g.expect(200, "json", "CreateIndex,CreateTime,Items,ModifyIndex,ModifyTime,Namespace,Path")
	g.do("variables list by prefix", "GET", "/v1/vars?prefix="+url.QueryEscape("nomad/jobs/"+job), nil)
	g.expect(200, "json", "[]interface {}")
	g.do("variable over 64 KiB", "PUT", "/v1/var/"+path, vbody(map[string]string{"envelope": strings.Repeat("x", 70000)}))
	g.expect(500, "text", "variables are limited to 64KiB in total size")
	long := "hyperfunc/" + strings.Repeat("a", 130)
	g.do("variable path over 128 characters", "PUT", "/v1/var/"+long, vbody(map[string]string{"a": "b"}))
	g.expect(500, "text", `invalid path "`+long+`"`)
	g.do("variable delete", "DELETE", "/v1/var/"+path, nil)
	g.expect(204, "text", "")
	g.do("variable delete missing", "DELETE", "/v1/var/"+path, nil)
	g.expect(204, "text", "")
	g.do("ACL policy without ACLs", "PUT", "/v1/acl/policy/hf-conformance", []byte(`{"Name":"hf-conformance","Rules":"namespace \"default\" {}"}`))
	g.expect(400, "text", "ACL support disabled")
}

func TestConformance(t *testing.T) {
	var double, real []answer
	t.Run("double", func(t *testing.T) {
		srv := nomadtest.New(t)
		double = runConformance(t, srv.URL, "", "busybox:1.36")
	})
	t.Run("real", func(t *testing.T) {
		real = runConformance(t, nomadtest.RealAddr(t), nomadtest.ShimVolume(), realImage())
	})
	if double == nil || real == nil {
		return
	}
	if !slices.Equal(double, real) {
		for i := range max(len(double), len(real)) {
			var d, r answer
			if i < len(double) {
				d = double[i]
			}
			if i < len(real) {
				r = real[i]
			}
			if d != r {
				t.Errorf("exchange %d differs:\n  double %+v\n  real   %+v", i, d, r)
			}
		}
	}
}
