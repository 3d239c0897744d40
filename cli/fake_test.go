package cli_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hyperfunc/hyperfunc/api"
	"github.com/hyperfunc/hyperfunc/cli"
)

// fakeAPI plays the /v1 API of a hyperfunc agent in memory. Functions "run"
// in the handler: echo prints its arguments, cat and convert copy stdin,
// fail fails with a message.
type fakeAPI struct {
	srv      *httptest.Server
	token    string // when set, requests must carry it
	maxStdin int64
	hold     bool // async calls stay RUNNING until someone waits for them
	// blockWait makes get --wait and logs --follow block until the client
	// goes away; blocked gets a value when such a request arrives.
	blockWait bool
	blocked   chan struct{}
	// cutSync: a sync call's connection is cut after the agent's 102 with
	// the call ID, as a proxy's timeout would.
	cutSync bool

	mu         sync.Mutex
	fns        map[string]*api.Function
	calls      map[string]*fakeCall
	logs       map[string][]api.LogEvent
	pulled     []string
	seq        int
	clock      time.Time
	callHeader http.Header // headers of the last call request
	listQuery  string      // query of the last list request
}

type fakeCall struct {
	call   api.Call
	stdin  []byte
	stdout []byte
}

func newFakeAPI(t *testing.T) *fakeAPI {
	t.Helper()
	f := &fakeAPI{
		maxStdin: 1 << 20,
		fns:      map[string]*api.Function{},
		calls:    map[string]*fakeCall{},
		logs:     map[string][]api.LogEvent{},
		clock:    time.Date(2017, 3, 16, 15, 5, 58, 0, time.UTC),
		blocked:  make(chan struct{}, 10),
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/images/pull", f.pull)
	mux.HandleFunc("POST /v1/functions", f.create)
	mux.HandleFunc("GET /v1/functions", f.list)
	mux.HandleFunc("GET /v1/functions/{name}", f.info)
	mux.HandleFunc("POST /v1/functions/{name}", f.update)
	mux.HandleFunc("DELETE /v1/functions/{name}", f.remove)
	mux.HandleFunc("POST /v1/functions/{name}/call", f.callFn)
	mux.HandleFunc("GET /v1/functions/{name}/logs", f.logsFn)
	mux.HandleFunc("GET /v1/functions/{name}/status", f.status)
	mux.HandleFunc("GET /v1/calls/{id}", f.callInfo)
	mux.HandleFunc("GET /v1/calls/{id}/output", f.output)
	mux.HandleFunc("POST /v1/calls/{id}/cancel", f.cancel)
	f.srv = httptest.NewServer(f.auth(mux))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeAPI) auth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if f.token != "" {
			tok := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
			if tok == "" {
				tok = r.Header.Get(api.HeaderToken)
			}
			switch {
			case tok == "":
				writeErr(w, http.StatusUnauthorized, "missing token", "")
				return
			case tok != f.token:
				writeErr(w, http.StatusForbidden, "permission denied", "")
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func writeErr(w http.ResponseWriter, code int, msg, callID string) {
	writeJSON(w, code, api.ErrorBody{Error: msg, CallID: callID})
}

func (f *fakeAPI) tick() time.Time {
	f.clock = f.clock.Add(time.Second)
	return f.clock
}

func (f *fakeAPI) event(c *fakeCall, kind, text string) {
	f.logs[c.call.Function] = append(f.logs[c.call.Function], api.LogEvent{
		Time: f.tick(), Function: c.call.Function, CallID: c.call.ID, Kind: kind, Text: text,
		Index: uint64(len(f.logs[c.call.Function]) + 1),
	})
}

func (f *fakeAPI) pull(w http.ResponseWriter, r *http.Request) {
	var req api.PullRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.Image == "" {
		writeErr(w, http.StatusBadRequest, "image required", "")
		return
	}
	f.mu.Lock()
	f.pulled = append(f.pulled, req.Image)
	f.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]string{})
}

func (f *fakeAPI) create(w http.ResponseWriter, r *http.Request) {
	var spec api.FunctionSpec
	if err := json.NewDecoder(r.Body).Decode(&spec); err != nil || spec.Name == "" || spec.Image == "" {
		writeErr(w, http.StatusBadRequest, "name and image required", "")
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.fns[spec.Name]; ok {
		writeErr(w, http.StatusConflict, fmt.Sprintf("function %q already exists", spec.Name), "")
		return
	}
	if spec.Size == "" {
		spec.Size = api.DefaultSize
	}
	f.seq++
	fn := &api.Function{
		Name: spec.Name, Owner: "anonymous", Image: spec.Image, Command: spec.Command,
		Entrypoint: spec.Entrypoint, Workdir: spec.Workdir, Env: spec.Env, Labels: spec.Labels,
		Size: spec.Size, Resources: api.Sizes[spec.Size], Timeout: spec.Timeout,
		CreatedAt: f.tick(), CreateIndex: uint64(f.seq),
	}
	f.fns[fn.Name] = fn
	out := *fn
	out.Address = fmt.Sprintf("%s/call/%s/secret%d", f.srv.URL, fn.Name, f.seq)
	writeJSON(w, http.StatusOK, out)
}

func (f *fakeAPI) list(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.listQuery = r.URL.RawQuery
	out := []*api.Function{}
	for _, fn := range f.fns {
		out = append(out, fn)
	}
	writeJSON(w, http.StatusOK, out)
}

func (f *fakeAPI) function(w http.ResponseWriter, name string) *api.Function {
	fn, ok := f.fns[name]
	if !ok {
		writeErr(w, http.StatusNotFound, fmt.Sprintf("function %q not found", name), "")
	}
	return fn
}

func (f *fakeAPI) info(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if fn := f.function(w, r.PathValue("name")); fn != nil {
		writeJSON(w, http.StatusOK, fn)
	}
}

func (f *fakeAPI) update(w http.ResponseWriter, r *http.Request) {
	var u api.FunctionUpdate
	if err := json.NewDecoder(r.Body).Decode(&u); err != nil {
		writeErr(w, http.StatusBadRequest, err.Error(), "")
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	fn := f.function(w, r.PathValue("name"))
	if fn == nil {
		return
	}
	if u.Size != nil {
		fn.Size = *u.Size
	}
	if u.Timeout != nil {
		fn.Timeout = *u.Timeout
	}
	for k, v := range u.Env {
		if fn.Env == nil {
			fn.Env = map[string]string{}
		}
		fn.Env[k] = v
	}
	out := *fn
	if u.Refresh {
		f.seq++
		out.Address = fmt.Sprintf("%s/call/%s/secret%d", f.srv.URL, fn.Name, f.seq)
	}
	writeJSON(w, http.StatusOK, out)
}

func (f *fakeAPI) remove(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if fn := f.function(w, r.PathValue("name")); fn != nil {
		delete(f.fns, fn.Name)
		writeJSON(w, http.StatusOK, map[string]string{})
	}
}

// execute runs a call to its end.
func (f *fakeAPI) execute(c *fakeCall) {
	fn := f.fns[c.call.Function]
	argv := append(append([]string{}, fn.Entrypoint...), fn.Command...)
	c.call.State = api.StateRunning
	c.call.StartedAt = f.tick()
	f.event(c, api.StateRunning, "")
	var prog string
	if len(argv) > 0 {
		prog = argv[0]
	}
	switch prog {
	case "echo":
		c.stdout = []byte(strings.Join(argv[1:], " ") + "\n")
	case "cat", "convert":
		c.stdout = c.stdin
	case "fail":
		c.call.State = api.StateFailed
		c.call.Reason = api.ReasonExit
		c.call.ExitCode = 1
		c.call.Message = "exit status 1: boom"
	}
	c.call.FinishedAt = f.tick()
	if c.call.State == api.StateFailed {
		f.event(c, api.StateFailed, "Message: "+c.call.Message)
		return
	}
	c.call.State = api.StateFinished
	c.call.StdoutSize = int64(len(c.stdout))
	f.event(c, api.StateFinished, "ShortStdout: "+short(c.stdout)+", ShortStderr: ")
}

func short(b []byte) string {
	if len(b) > 255 {
		b = b[:255]
	}
	return string(b)
}

func (f *fakeAPI) callFn(w http.ResponseWriter, r *http.Request) {
	if r.ContentLength > f.maxStdin {
		writeErr(w, http.StatusRequestEntityTooLarge, "stdin exceeds 1MiB", "")
		return
	}
	stdin, err := io.ReadAll(http.MaxBytesReader(w, r.Body, f.maxStdin))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeErr(w, http.StatusRequestEntityTooLarge, "stdin exceeds 1MiB", "")
			return
		}
		writeErr(w, http.StatusBadRequest, err.Error(), "")
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	fn := f.function(w, r.PathValue("name"))
	if fn == nil {
		return
	}
	f.callHeader = r.Header.Clone()
	f.seq++
	c := &fakeCall{stdin: stdin, call: api.Call{
		ID:       fmt.Sprintf("218b7b10-e7f1-4c48-ac3c-%012d", f.seq),
		Function: fn.Name, Owner: fn.Owner, State: api.StatePending,
		StdinSize: int64(len(stdin)), CreatedAt: f.tick(),
	}}
	f.calls[c.call.ID] = c
	f.event(c, "CALL", "ShortStdin: "+short(stdin))
	f.event(c, api.StatePending, "")
	if r.URL.Query().Get("sync") == "true" && f.cutSync {
		w.Header().Set(api.HeaderCallID, c.call.ID)
		w.WriteHeader(http.StatusProcessing)
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			conn.Close()
		}
		return
	}
	if r.URL.Query().Get("sync") == "true" {
		f.execute(c)
		w.Header().Set(api.HeaderCallID, c.call.ID)
		if c.call.State == api.StateFailed {
			writeErr(w, http.StatusInternalServerError, c.call.Message, c.call.ID)
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		_, _ = w.Write(c.stdout)
		return
	}
	if !f.hold {
		f.execute(c)
	}
	writeJSON(w, http.StatusAccepted, api.CallAccepted{CallID: c.call.ID})
}

func (f *fakeAPI) call(w http.ResponseWriter, id string) *fakeCall {
	c, ok := f.calls[id]
	if !ok {
		writeErr(w, http.StatusNotFound, fmt.Sprintf("call %q not found", id), "")
	}
	return c
}

func (f *fakeAPI) callInfo(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if c := f.call(w, r.PathValue("id")); c != nil {
		w.Header().Set(api.HeaderIndex, strconv.Itoa(f.seq))
		writeJSON(w, http.StatusOK, c.call)
	}
}

func (f *fakeAPI) output(w http.ResponseWriter, r *http.Request) {
	if f.blockWait && r.URL.Query().Get("wait") == "true" {
		f.blocked <- struct{}{}
		<-r.Context().Done()
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.call(w, r.PathValue("id"))
	if c == nil {
		return
	}
	if !c.call.Done() && r.URL.Query().Get("wait") == "true" {
		f.execute(c)
	}
	w.Header().Set(api.HeaderCallState, c.call.State)
	switch {
	case c.call.State == api.StatePending:
		w.WriteHeader(http.StatusAccepted)
	case c.call.State == api.StateRunning:
		w.WriteHeader(http.StatusCreated)
	case c.call.Rotated:
		writeErr(w, http.StatusGone, fmt.Sprintf("output of call %s rotated out of the cache", c.call.ID), c.call.ID)
	case c.call.State == api.StateFailed:
		writeErr(w, http.StatusInternalServerError, c.call.Message, c.call.ID)
	case c.call.State == api.StateCanceled:
		writeErr(w, http.StatusInternalServerError, "canceled", c.call.ID)
	default:
		_, _ = w.Write(c.stdout)
	}
}

func (f *fakeAPI) cancel(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.call(w, r.PathValue("id"))
	if c == nil {
		return
	}
	if c.call.Done() {
		writeErr(w, http.StatusConflict, fmt.Sprintf("call %s already ended", c.call.ID), c.call.ID)
		return
	}
	c.call.State = api.StateCanceled
	f.event(c, api.StateCanceled, "")
	writeJSON(w, http.StatusOK, map[string]string{})
}

func (f *fakeAPI) logsFn(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if q.Get("format") != "ndjson" {
		writeErr(w, http.StatusBadRequest, "format must be ndjson", "")
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	fn := f.function(w, r.PathValue("name"))
	if fn == nil {
		return
	}
	var evs []api.LogEvent
	for _, ev := range f.logs[fn.Name] {
		if id := q.Get("callid"); id == "" || ev.CallID == id {
			evs = append(evs, ev)
		}
	}
	if n, _ := strconv.Atoi(q.Get("tail")); n > 0 && n < len(evs) {
		evs = evs[len(evs)-n:]
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	enc := json.NewEncoder(w)
	for _, ev := range evs {
		_ = enc.Encode(ev)
	}
	if f.blockWait && q.Get("follow") == "true" {
		w.(http.Flusher).Flush()
		f.mu.Unlock()
		f.blocked <- struct{}{}
		<-r.Context().Done()
		f.mu.Lock()
	}
}

func (f *fakeAPI) status(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn := f.function(w, r.PathValue("name"))
	if fn == nil {
		return
	}
	st := api.FunctionStatus{Function: fn.Name}
	for _, c := range f.calls {
		if c.call.Function != fn.Name {
			continue
		}
		switch c.call.State {
		case api.StatePending:
			st.Pending++
		case api.StateRunning:
			st.Running++
		case api.StateFinished:
			st.Finished++
		case api.StateFailed:
			st.Failed++
		case api.StateCanceled:
			st.Canceled++
		}
	}
	writeJSON(w, http.StatusOK, st)
}

// result of one CLI run.
type result struct {
	stdout, stderr string
	code           int
}

// run runs the CLI against the fake with env on top of HYPER_ADDR and an
// empty HOME.
func (f *fakeAPI) run(t *testing.T, stdin io.Reader, env map[string]string, args ...string) result {
	t.Helper()
	e := map[string]string{"HOME": t.TempDir()}
	if f != nil {
		e["HYPER_ADDR"] = f.srv.URL
	}
	for k, v := range env {
		e[k] = v
	}
	return runCLI(t, stdin, e, args...)
}

func runCLI(t *testing.T, stdin io.Reader, env map[string]string, args ...string) result {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := cli.Run(args, stdin, &stdout, &stderr, func(k string) string { return env[k] })
	return result{stdout: stdout.String(), stderr: stderr.String(), code: code}
}

// must fails the test unless the run succeeded.
func (r result) must(t *testing.T) result {
	t.Helper()
	if r.code != 0 {
		t.Fatalf("exit code %d, stderr:\n%s", r.code, r.stderr)
	}
	return r
}
