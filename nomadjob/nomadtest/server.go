// Package nomadtest is a Nomad double: an httptest server that speaks the
// wire format of Nomad 1.6.5 as recorded in shared/nomad-api-fixtures (JSON
// bodies, X-Nomad-Index and blocking queries, plain-text 500 errors, framed
// and plain logs, fs/cat answering 200 with an error text for a missing file,
// NDJSON event stream with {} heartbeats, idempotent dispatch, the 16 KiB
// payload cap and the meta checks with Nomad's texts, children listed by
// prefix, purge). A dispatched child "runs" through a pluggable Runner; the
// double fetches the task's artifacts over HTTP like a Nomad client.
// Faults can be injected: 500s, an unreachable server, dropped or silent
// event streams, lost allocations, empty log streams, failed image pulls.
package nomadtest

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	nomad "github.com/hashicorp/nomad/api"
)

// MaxPayload is Nomad's dispatch payload cap.
const MaxPayload = 16384

// Node of the double's single client.
const (
	NodeID   = "95f2c28e-ffbd-4e25-6c07-9671b8af0b7a"
	NodeName = "vm"
)

// Server is the double. Create it with New; it closes with the test.
type Server struct {
	URL string
	srv *httptest.Server

	// Runner runs a task; DefaultRunner unless set before the first dispatch.
	Runner Runner
	// HTTPClient fetches artifacts.
	HTTPClient *http.Client
	// Heartbeat is the event stream's {} interval (Nomad: 10s).
	Heartbeat time.Duration
	// BeforeDispatch, when set, runs before a dispatch of parent is
	// served (a test's chance to change the parent in between).
	BeforeDispatch func(parent string)

	mu             sync.Mutex
	index          uint64
	changed        chan struct{}
	jobs           map[string]*nomad.Job
	allocs         map[string]*allocRec
	byJob          map[string][]string
	events         []eventLine // buffer for index replays
	subs           map[*subscriber]struct{}
	seq            int
	runs           map[string]int // executions per call_id
	requests       map[string]int // per route kind
	vars           map[string]*nomad.Variable
	hideVars       bool
	crashWarm      int
	crashDelivered int

	// faults
	down         bool
	unreachable  bool
	failNext     map[string]int // path prefix -> count of 500s to answer
	silentEvents bool
	emptyLogs    bool
	failPull     map[string]string // image -> driver error
	loseAllocs   bool
	unplaced     bool          // new children get no allocation (a blocked evaluation)
	holdAllocs   chan struct{} // when non-nil, tasks wait for it before running
	holdEnds     chan struct{} // when non-nil, tasks that ran wait for it before they end
	earlyReads   int           // fs/ls and fs/cat of alloc while the allocation ran
	cancels      map[string]context.CancelFunc
	wg           sync.WaitGroup
	closed       bool
}

type allocRec struct {
	a      *nomad.Allocation
	files  map[string][]byte
	links  map[string]bool // paths in files that are symlinks
	stdout []byte
	stderr []byte
}

type eventLine struct {
	index uint64
	line  []byte
}

type subscriber struct {
	ch  chan []byte
	out chan struct{} // closed to drop the stream
}

// New starts a double and closes it at the end of the test.
func New(t interface {
	Cleanup(func())
	Helper()
}) *Server {
	t.Helper()
	s := &Server{
		Heartbeat:  time.Second,
		HTTPClient: &http.Client{Timeout: 30 * time.Second},
		changed:    make(chan struct{}),
		jobs:       map[string]*nomad.Job{},
		allocs:     map[string]*allocRec{},
		byJob:      map[string][]string{},
		subs:       map[*subscriber]struct{}{},
		runs:       map[string]int{},
		requests:   map[string]int{},
		vars:       map[string]*nomad.Variable{},
		failNext:   map[string]int{},
		failPull:   map[string]string{},
		cancels:    map[string]context.CancelFunc{},
		index:      886,
	}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	s.URL = s.srv.URL
	t.Cleanup(s.Close)
	return s
}

// Close stops running tasks and the server.
func (s *Server) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	for _, c := range s.cancels {
		c()
	}
	for sub := range s.subs {
		close(sub.out)
		delete(s.subs, sub)
	}
	if s.holdAllocs != nil {
		close(s.holdAllocs)
		s.holdAllocs = nil
	}
	s.mu.Unlock()
	s.srv.CloseClientConnections()
	s.srv.Close()
	s.wg.Wait()
}

// ---- fault injection ----

// SetDown makes every request answer 500 "No cluster leader" (a Nomad
// without a leader) and drops event streams.
func (s *Server) SetDown(down bool) {
	s.mu.Lock()
	s.down = down
	s.mu.Unlock()
	if down {
		s.DropEventStreams()
	}
}

// SetUnreachable makes every request fail at the connection level.
func (s *Server) SetUnreachable(u bool) {
	s.mu.Lock()
	s.unreachable = u
	s.mu.Unlock()
	if u {
		s.DropEventStreams()
		s.srv.CloseClientConnections()
	}
}

// FailNext answers the next n requests whose path starts with prefix with
// HTTP 500 "rpc error: No cluster leader".
func (s *Server) FailNext(prefix string, n int) {
	s.mu.Lock()
	s.failNext[prefix] += n
	s.mu.Unlock()
}

// DropEventStreams closes every open event stream.
func (s *Server) DropEventStreams() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for sub := range s.subs {
		close(sub.out)
		delete(s.subs, sub)
	}
}

// SilenceEvents stops publishing (and buffering) events: as if the indexes
// aged out of the buffer before anyone read them.
func (s *Server) SilenceEvents(on bool) {
	s.mu.Lock()
	s.silentEvents = on
	s.mu.Unlock()
}

// EmptyLogs makes fs/logs answer empty bodies (nomad#6931).
func (s *Server) EmptyLogs(on bool) {
	s.mu.Lock()
	s.emptyLogs = on
	s.mu.Unlock()
}

// FailPull makes pulls of image fail with a Driver Failure.
func (s *Server) FailPull(image string) {
	s.mu.Lock()
	s.failPull[image] = fmt.Sprintf("Failed to pull `%s`: API error (500): Get \"https://registry-1.docker.io/v2/\": dial tcp: lookup registry-1.docker.io on 127.0.0.53:53: no such host", image)
	s.mu.Unlock()
}

// LoseAllocations makes the node of new allocations go down before they run:
// their ClientStatus becomes lost.
func (s *Server) LoseAllocations(on bool) {
	s.mu.Lock()
	s.loseAllocs = on
	s.mu.Unlock()
}

// Unplaced makes new children get no allocation, as when no node has room
// for them (Nomad's evaluation blocks): they wait queued.
func (s *Server) Unplaced(on bool) {
	s.mu.Lock()
	s.unplaced = on
	s.mu.Unlock()
}

// Hold makes new tasks wait before running until Release.
func (s *Server) Hold() {
	s.mu.Lock()
	if s.holdAllocs == nil {
		s.holdAllocs = make(chan struct{})
	}
	s.mu.Unlock()
}

// Release lets held tasks run.
func (s *Server) Release() {
	s.mu.Lock()
	if s.holdAllocs != nil {
		close(s.holdAllocs)
		s.holdAllocs = nil
	}
	s.mu.Unlock()
}

// HoldEnds makes tasks that ran (their files and logs in place) stay
// running until ReleaseEnds: a sealed sandbox whose teardown is slow.
func (s *Server) HoldEnds() {
	s.mu.Lock()
	if s.holdEnds == nil {
		s.holdEnds = make(chan struct{})
	}
	s.mu.Unlock()
}

// ReleaseEnds lets held tasks end.
func (s *Server) ReleaseEnds() {
	s.mu.Lock()
	if s.holdEnds != nil {
		close(s.holdEnds)
		s.holdEnds = nil
	}
	s.mu.Unlock()
}

// ---- inspection ----

// EarlyReads counts fs/ls and fs/cat requests under alloc while their
// allocation was not terminal (safe only in a sealed sandbox).
func (s *Server) EarlyReads() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.earlyReads
}

// Executions is how many times the task of call_id ran.
func (s *Server) Executions(callID string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.runs[callID]
}

// Job returns a copy of a job as registered (nil if absent).
func (s *Server) Job(id string) *nomad.Job {
	s.mu.Lock()
	defer s.mu.Unlock()
	j := s.jobs[id]
	if j == nil {
		return nil
	}
	var cp nomad.Job
	b, _ := json.Marshal(j)
	_ = json.Unmarshal(b, &cp)
	return &cp
}

// SetJobMeta sets a meta key of a registered job, as a registration of
// it by someone else would (its version moves on).
func (s *Server) SetJobMeta(id, key, value string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if j := s.jobs[id]; j != nil {
		j.Meta[key] = value
		j.Version = ptr(deref(j.Version) + 1)
		s.bump()
	}
}

// AllocStatus is the ClientStatus of a job's last allocation ("" when
// it has none).
func (s *Server) AllocStatus(jobID string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	ids := s.byJob[jobID]
	if len(ids) == 0 {
		return ""
	}
	return s.allocs[ids[len(ids)-1]].a.ClientStatus
}

// JobIDs lists the jobs that exist (not purged), sorted.
func (s *Server) JobIDs() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	ids := make([]string, 0, len(s.jobs))
	for id := range s.jobs {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// Requests counts the requests of a kind ("dispatch", "register", ...;
// "fs/stat PATH" counts the stats that found PATH).
func (s *Server) Requests(kind string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests[kind]
}

// ---- HTTP ----

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	unreachable, down := s.unreachable, s.down
	failed := false
	for p, n := range s.failNext {
		if n > 0 && strings.HasPrefix(r.URL.Path, p) {
			s.failNext[p] = n - 1
			failed = true
			break
		}
	}
	s.mu.Unlock()
	if unreachable {
		if hj, ok := w.(http.Hijacker); ok {
			if conn, _, err := hj.Hijack(); err == nil {
				_ = conn.Close()
				return
			}
		}
		http.Error(w, "unreachable", http.StatusBadGateway)
		return
	}
	if down {
		textError(w, http.StatusInternalServerError, "No cluster leader")
		return
	}
	if failed {
		textError(w, http.StatusInternalServerError, "rpc error: No cluster leader")
		return
	}
	// Route on the escaped path: a child's ID holds a "/" sent as %2F.
	segs := strings.Split(strings.TrimPrefix(r.URL.EscapedPath(), "/"), "/")
	for i := range segs {
		if u, err := url.PathUnescape(segs[i]); err == nil {
			segs[i] = u
		}
	}
	switch {
	case len(segs) == 3 && segs[0] == "v1" && segs[1] == "status" && segs[2] == "leader":
		s.count("leader")
		writeJSON(w, 0, "127.0.0.1:4647", false)
	case len(segs) == 2 && segs[0] == "v1" && segs[1] == "jobs":
		switch r.Method {
		case http.MethodPut, http.MethodPost:
			s.count("register")
			s.register(w, r)
		case http.MethodGet:
			s.count("list")
			s.list(w, r)
		default:
			textError(w, http.StatusMethodNotAllowed, "Invalid method")
		}
	case len(segs) == 3 && segs[0] == "v1" && segs[1] == "job":
		switch r.Method {
		case http.MethodGet:
			s.count("job")
			s.jobInfo(w, segs[2])
		case http.MethodDelete:
			s.count("deregister")
			s.deregister(w, r, segs[2])
		default:
			textError(w, http.StatusMethodNotAllowed, "Invalid method")
		}
	case len(segs) == 4 && segs[0] == "v1" && segs[1] == "job" && segs[3] == "dispatch":
		s.count("dispatch")
		s.dispatch(w, r, segs[2])
	case len(segs) == 4 && segs[0] == "v1" && segs[1] == "job" && segs[3] == "allocations":
		s.count("allocations")
		s.jobAllocs(w, r, segs[2])
	case len(segs) == 3 && segs[0] == "v1" && segs[1] == "allocation":
		s.count("allocation")
		s.allocInfo(w, segs[2])
	case len(segs) == 5 && segs[0] == "v1" && segs[1] == "client" && segs[2] == "fs":
		s.count("fs/" + segs[3])
		s.fs(w, r, segs[3], segs[4])
	case len(segs) >= 3 && segs[0] == "v1" && segs[1] == "var":
		s.variable(w, r, strings.Join(segs[2:], "/"))
	case len(segs) == 4 && segs[0] == "v1" && segs[1] == "acl" && segs[2] == "policy":
		// The double runs without ACLs, as the dev agent does.
		s.count("acl/policy")
		textError(w, http.StatusBadRequest, "ACL support disabled")
	case len(segs) == 2 && segs[0] == "v1" && segs[1] == "vars":
		s.listVariables(w, r)
	case len(segs) == 3 && segs[0] == "v1" && segs[1] == "event" && segs[2] == "stream":
		s.count("stream")
		s.stream(w, r)
	default:
		textError(w, http.StatusNotFound, "Invalid URL")
	}
}

func (s *Server) count(kind string) {
	s.mu.Lock()
	s.requests[kind]++
	s.mu.Unlock()
}

func textError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(msg))
}

// writeJSON answers like Nomad: X-Nomad-Index, and for reads the leader
// headers.
func writeJSON(w http.ResponseWriter, index uint64, v any, read bool) {
	w.Header().Set("Content-Type", "application/json")
	if index > 0 {
		w.Header().Set("X-Nomad-Index", strconv.FormatUint(index, 10))
	}
	if read {
		w.Header().Set("X-Nomad-Knownleader", "true")
		w.Header().Set("X-Nomad-Lastcontact", "0")
	}
	_ = json.NewEncoder(w).Encode(v)
}

// bump moves the index on and wakes blocking queries. s.mu held.
func (s *Server) bump() uint64 {
	s.index++
	close(s.changed)
	s.changed = make(chan struct{})
	return s.index
}

func (s *Server) register(w http.ResponseWriter, r *http.Request) {
	var req nomad.JobRegisterRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.Job == nil || req.Job.ID == nil || *req.Job.ID == "" {
		textError(w, http.StatusBadRequest, "Job ID does not match name")
		return
	}
	job := req.Job
	if job.Name == nil {
		job.Name = job.ID
	}
	if job.Namespace == nil {
		job.Namespace = ptr("default")
	}
	if job.Status == nil {
		job.Status = ptr("running")
	}
	s.mu.Lock()
	idx := s.bump()
	old := s.jobs[*job.ID]
	job.CreateIndex = ptr(idx)
	if old != nil {
		job.CreateIndex = old.CreateIndex
		job.Version = ptr(deref(old.Version) + 1)
	} else {
		job.Version = ptr(uint64(0))
	}
	job.ModifyIndex, job.JobModifyIndex = ptr(idx), ptr(idx)
	if job.IsParameterized() {
		job.Status = ptr("running")
	}
	s.jobs[*job.ID] = job
	sysbatch := deref(job.Type) == "sysbatch"
	s.mu.Unlock()
	evalIndex, evalID := uint64(0), ""
	if sysbatch {
		evalIndex, evalID = idx, uuid(idx)
		s.place(job)
	}
	writeJSON(w, idx, map[string]any{
		"EvalCreateIndex": evalIndex, "EvalID": evalID, "Index": idx, "JobModifyIndex": idx,
		"KnownLeader": false, "LastContact": 0, "NextToken": "", "Warnings": "",
	}, false)
}

func (s *Server) list(w http.ResponseWriter, r *http.Request) {
	prefix := r.URL.Query().Get("prefix")
	withMeta := r.URL.Query().Get("meta") == "true" // Nomad 1.6
	s.mu.Lock()
	var out []*nomad.JobListStub
	for id, j := range s.jobs {
		if !strings.HasPrefix(id, prefix) {
			continue
		}
		var meta map[string]string
		if withMeta && len(j.Meta) > 0 {
			meta = make(map[string]string, len(j.Meta))
			for k, v := range j.Meta {
				meta[k] = v
			}
		}
		out = append(out, &nomad.JobListStub{
			Meta: meta,
			ID:   id, Name: deref(j.Name), Namespace: deref(j.Namespace), Datacenters: j.Datacenters,
			ParentID: deref(j.ParentID), Type: deref(j.Type), Priority: 50, Status: deref(j.Status),
			ParameterizedJob: j.IsParameterized(),
			CreateIndex:      deref(j.CreateIndex), ModifyIndex: deref(j.ModifyIndex), JobModifyIndex: deref(j.JobModifyIndex),
			SubmitTime: deref(j.SubmitTime),
		})
	}
	idx := s.index
	s.mu.Unlock()
	sort.Slice(out, func(i, k int) bool { return out[i].ID < out[k].ID })
	if out == nil {
		out = []*nomad.JobListStub{}
	}
	writeJSON(w, idx, out, true)
}

func (s *Server) jobInfo(w http.ResponseWriter, id string) {
	s.mu.Lock()
	j := s.jobs[id]
	var b []byte
	if j != nil {
		b, _ = json.Marshal(j)
	}
	idx := s.index
	s.mu.Unlock()
	if j == nil {
		textError(w, http.StatusNotFound, "job not found")
		return
	}
	writeJSON(w, idx, json.RawMessage(b), true)
}

func (s *Server) deregister(w http.ResponseWriter, r *http.Request, id string) {
	purge := r.URL.Query().Get("purge") == "true"
	s.mu.Lock()
	j := s.jobs[id]
	if j == nil {
		// Nomad answers 200 with zero indexes for a job it does not know.
		s.mu.Unlock()
		writeJSON(w, 0, map[string]any{
			"EvalCreateIndex": 0, "EvalID": "", "Index": 0, "JobModifyIndex": 0,
			"KnownLeader": false, "LastContact": 0, "NextToken": "", "VolumeEvalID": "", "VolumeEvalIndex": 0,
		}, false)
		return
	}
	idx := s.bump()
	if purge {
		delete(s.jobs, id)
	} else {
		j.Stop = ptr(true)
		j.Status = ptr("dead")
	}
	for _, aid := range s.byJob[id] {
		// Nomad's scheduler marks the job's live allocations stop
		// before the client kills them (a terminal one is left alone).
		if rec := s.allocs[aid]; rec != nil && !terminal(rec.a.ClientStatus) {
			rec.a.DesiredStatus, rec.a.DesiredDescription = "stop", "alloc not needed due to job update"
		}
		if c := s.cancels[aid]; c != nil {
			c() // the task is killed
		}
	}
	s.mu.Unlock()
	writeJSON(w, idx, map[string]any{
		"EvalCreateIndex": idx, "EvalID": uuid(idx), "Index": idx, "JobModifyIndex": idx,
		"KnownLeader": false, "LastContact": 0, "NextToken": "", "VolumeEvalID": "", "VolumeEvalIndex": 0,
	}, false)
}

func (s *Server) dispatch(w http.ResponseWriter, r *http.Request, parentID string) {
	if r.Method != http.MethodPut && r.Method != http.MethodPost {
		textError(w, http.StatusMethodNotAllowed, "Invalid method")
		return
	}
	var req nomad.JobDispatchRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		textError(w, http.StatusBadRequest, err.Error())
		return
	}
	token := r.URL.Query().Get("idempotency_token")
	if s.BeforeDispatch != nil {
		s.BeforeDispatch(parentID)
	}
	s.mu.Lock()
	parent := s.jobs[parentID]
	if parent == nil || !parent.IsParameterized() || deref(parent.Stop) {
		s.mu.Unlock()
		textError(w, http.StatusInternalServerError, "parameterized job not found")
		return
	}
	if msg := validateDispatch(parent, &req); msg != "" {
		s.mu.Unlock()
		textError(w, http.StatusInternalServerError, msg)
		return
	}
	if token != "" {
		for id, j := range s.jobs {
			// A stopped child still holds its token; only a purged one
			// (gone from s.jobs) frees it.
			if deref(j.ParentID) == parentID && deref(j.DispatchIdempotencyToken) == token {
				idx := s.bump()
				s.mu.Unlock()
				writeJSON(w, idx, map[string]any{
					"DispatchedJobID": id, "EvalCreateIndex": 0, "EvalID": "", "Index": idx,
					"JobCreateIndex": deref(j.CreateIndex),
				}, false)
				return
			}
		}
	}
	s.seq++
	now := time.Now()
	childID := fmt.Sprintf("%s/dispatch-%d-%08x", parentID, now.Unix(), uint32(s.seq)*2654435761)
	child := copyJob(parent)
	jobIdx := s.bump()
	child.ID, child.Name, child.ParentID = ptr(childID), ptr(childID), ptr(parentID)
	child.Dispatched = true
	// The child keeps the parent's meta, the dispatch meta merged in.
	child.Meta = map[string]string{}
	for k, v := range parent.Meta {
		child.Meta[k] = v
	}
	for k, v := range req.Meta {
		child.Meta[k] = v
	}
	child.Payload = req.Payload
	child.DispatchIdempotencyToken = ptr(token)
	child.Status = ptr("pending")
	child.SubmitTime = ptr(now.UnixNano())
	child.CreateIndex, child.ModifyIndex, child.JobModifyIndex = ptr(jobIdx), ptr(jobIdx), ptr(jobIdx)
	child.Version = ptr(uint64(0))
	s.jobs[childID] = child
	evalIdx := s.bump()
	unplaced := s.unplaced
	s.mu.Unlock()
	if !unplaced {
		s.place(child)
	}
	writeJSON(w, evalIdx, map[string]any{
		"DispatchedJobID": childID, "EvalCreateIndex": evalIdx, "EvalID": uuid(evalIdx), "Index": evalIdx,
		"JobCreateIndex": jobIdx,
	}, false)
}

// validateDispatch checks as Nomad does, with its texts (fixtures 06-08).
func validateDispatch(parent *nomad.Job, req *nomad.JobDispatchRequest) string {
	pj := parent.ParameterizedJob
	switch {
	case pj.Payload == "forbidden" && len(req.Payload) > 0:
		return "Payload is not allowed"
	case pj.Payload == "required" && len(req.Payload) == 0:
		return "Payload is required"
	case len(req.Payload) > MaxPayload:
		return fmt.Sprintf("Payload exceeds maximum size; %d > %d", len(req.Payload), MaxPayload)
	}
	allowed := map[string]bool{}
	for _, k := range pj.MetaRequired {
		allowed[k] = true
	}
	for _, k := range pj.MetaOptional {
		allowed[k] = true
	}
	var unpermitted, missing []string
	for k := range req.Meta {
		if !allowed[k] {
			unpermitted = append(unpermitted, k)
		}
	}
	if len(unpermitted) > 0 {
		sort.Strings(unpermitted)
		return fmt.Sprintf("Dispatch request included unpermitted metadata keys: %v", unpermitted)
	}
	for _, k := range pj.MetaRequired {
		if _, ok := req.Meta[k]; !ok {
			missing = append(missing, k)
		}
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		return fmt.Sprintf("Dispatch did not provide required meta keys: %v", missing)
	}
	return ""
}

func (s *Server) jobAllocs(w http.ResponseWriter, r *http.Request, jobID string) {
	q := r.URL.Query()
	waitIndex, _ := strconv.ParseUint(q.Get("index"), 10, 64)
	wait := parseWait(q.Get("wait"))
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	for {
		s.mu.Lock()
		if s.index > waitIndex || waitIndex == 0 {
			out := make([]*nomad.AllocationListStub, 0, len(s.byJob[jobID]))
			for _, id := range s.byJob[jobID] {
				out = append(out, stub(s.allocs[id].a))
			}
			idx := s.index
			s.mu.Unlock()
			writeJSON(w, idx, out, true)
			return
		}
		ch := s.changed
		s.mu.Unlock()
		select {
		case <-ch:
		case <-deadline.C:
			waitIndex = 0
		case <-r.Context().Done():
			return
		}
	}
}

func parseWait(v string) time.Duration {
	if v == "" {
		return 5 * time.Minute
	}
	if d, err := time.ParseDuration(v); err == nil {
		return d
	}
	if n, err := strconv.Atoi(v); err == nil {
		return time.Duration(n) * time.Millisecond
	}
	return 5 * time.Minute
}

func (s *Server) allocInfo(w http.ResponseWriter, id string) {
	s.mu.Lock()
	rec := s.allocs[id]
	var b []byte
	if rec != nil {
		b, _ = json.Marshal(rec.a)
	}
	idx := s.index
	s.mu.Unlock()
	if rec == nil {
		textError(w, http.StatusNotFound, "alloc not found")
		return
	}
	writeJSON(w, idx, json.RawMessage(b), true)
}

func (s *Server) fs(w http.ResponseWriter, r *http.Request, op, allocID string) {
	q := r.URL.Query()
	s.mu.Lock()
	rec := s.allocs[allocID]
	empty := s.emptyLogs
	var file []byte
	var exists bool
	var logs []byte
	var listing []nomad.AllocFileInfo
	if rec != nil && op == "ls" {
		listing = rec.list(strings.Trim(q.Get("path"), "/"))
	}
	if rec != nil {
		file, exists = rec.files[strings.TrimPrefix(q.Get("path"), "/")]
		path := strings.Trim(q.Get("path"), "/")
		if (op == "cat" || op == "ls") && (path == "alloc" || strings.HasPrefix(path, "alloc/")) && !terminal(rec.a.ClientStatus) {
			s.earlyReads++
		}
		if op == "stat" && exists {
			s.requests["fs/stat "+path]++
		}
		switch q.Get("type") {
		case "stdout":
			logs = append([]byte(nil), rec.stdout...)
		case "stderr":
			logs = append([]byte(nil), rec.stderr...)
		}
		file = append([]byte(nil), file...)
	}
	s.mu.Unlock()
	if rec == nil {
		// fs/cat answers 200 with the error text, the others 404.
		unknown := "Unknown allocation \"" + allocID + "\""
		if op == "cat" {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			_, _ = w.Write([]byte(unknown))
			return
		}
		textError(w, http.StatusNotFound, unknown)
		return
	}
	missing := "stat /opt/nomad/data/alloc/" + allocID + "/" + q.Get("path") + ": no such file or directory"
	switch op {
	case "stat":
		if !exists {
			textError(w, http.StatusNotFound, missing)
			return
		}
		writeJSON(w, 0, nomad.AllocFileInfo{
			Name: q.Get("path")[strings.LastIndex(q.Get("path"), "/")+1:], Size: int64(len(file)),
			FileMode: "-rw-r--r--", ModTime: time.Now().UTC(), ContentType: "text/plain; charset=utf-8",
		}, false)
	case "ls":
		if listing == nil {
			textError(w, http.StatusNotFound, missing)
			return
		}
		writeJSON(w, 0, listing, false)
	case "cat":
		// Nomad answers 200 with the error text for a missing file (fixture 16).
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if !exists {
			_, _ = w.Write([]byte(missing))
			return
		}
		_, _ = w.Write(file)
	case "logs":
		if empty {
			logs = nil
		}
		if q.Get("plain") == "true" {
			w.Header().Set("Content-Type", "text/plain")
			_, _ = w.Write(logs)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		if len(logs) > 0 {
			_ = json.NewEncoder(w).Encode(map[string]any{
				"Data": logs, "File": "alloc/logs/" + q.Get("task") + "." + q.Get("type") + ".0", "Offset": len(logs),
			})
		}
	default:
		textError(w, http.StatusNotFound, "Invalid URL")
	}
}

// list is fs/ls of dir (alloc-relative): its files and the directories
// they imply, as the real client lists them (fixture 17); a link shows as
// "L". The log files are listed under alloc/logs. nil: no such directory.
func (rec *allocRec) list(dir string) []nomad.AllocFileInfo {
	seen := map[string]bool{}
	var out []nomad.AllocFileInfo
	add := func(p string, size int) {
		rest, ok := strings.CutPrefix(p, dir+"/")
		if !ok {
			return
		}
		name, _, isDir := strings.Cut(rest, "/")
		if seen[name] {
			return
		}
		seen[name] = true
		fi := nomad.AllocFileInfo{Name: name, FileMode: "-rw-r--r--", Size: int64(size), ModTime: time.Now().UTC()}
		switch {
		case isDir:
			fi.IsDir, fi.FileMode, fi.Size = true, "drwxrwxrwx", 4096
		case rec.links[p]:
			fi.FileMode, fi.Size = "Lrwxrwxrwx", 20
		}
		out = append(out, fi)
	}
	for p, b := range rec.files {
		add(p, len(b))
	}
	task := "fn"
	if len(rec.a.TaskStates) > 0 {
		for name := range rec.a.TaskStates {
			task = name
		}
	}
	add("alloc/logs/"+task+".stdout.0", len(rec.stdout))
	add("alloc/logs/"+task+".stderr.0", len(rec.stderr))
	// The directories Nomad makes are there, empty or not.
	for _, d := range []string{"alloc/data", "alloc/logs", "alloc/tmp"} {
		if strings.HasPrefix(d, dir+"/") {
			add(d+"/", 0)
		}
	}
	if len(out) == 0 && dir != "alloc/data" && dir != "alloc/logs" && dir != "alloc/tmp" {
		return nil
	}
	if out == nil {
		out = []nomad.AllocFileInfo{}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// stream serves /v1/event/stream: NDJSON, {} heartbeats, replay from index.
func (s *Server) stream(w http.ResponseWriter, r *http.Request) {
	topics := r.URL.Query()["topic"]
	want := false
	for _, t := range topics {
		if t == "*" || t == "Allocation" || strings.HasPrefix(t, "Allocation:") {
			want = true
		}
	}
	from, _ := strconv.ParseUint(r.URL.Query().Get("index"), 10, 64)
	fl, _ := w.(http.Flusher)
	sub := &subscriber{ch: make(chan []byte, 4096), out: make(chan struct{})}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		textError(w, http.StatusServiceUnavailable, "shutting down")
		return
	}
	var replay [][]byte
	if want && from > 0 {
		for _, ev := range s.events {
			if ev.index > from {
				replay = append(replay, ev.line)
			}
		}
	}
	if want {
		s.subs[sub] = struct{}{}
	}
	hb := s.Heartbeat
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.subs, sub)
		s.mu.Unlock()
	}()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write([]byte("{}\n"))
	for _, l := range replay {
		_, _ = w.Write(l)
	}
	if fl != nil {
		fl.Flush()
	}
	tick := time.NewTicker(hb)
	defer tick.Stop()
	for {
		var line []byte
		select {
		case <-r.Context().Done():
			return
		case <-sub.out:
			return
		case <-tick.C:
			line = []byte("{}\n")
		case line = <-sub.ch:
		}
		if _, err := w.Write(line); err != nil {
			return
		}
		if fl != nil {
			fl.Flush()
		}
	}
}

// publish sends an allocation's state to the event stream. s.mu held.
func (s *Server) publish(a *nomad.Allocation, typ string) {
	if s.silentEvents {
		return
	}
	// Nomad strips the job from allocation events (fixture 27).
	na := *a
	na.Job = nil
	a = &na
	ev := map[string]any{
		"Events": []map[string]any{{
			"FilterKeys": []string{a.JobID, ""}, "Index": s.index, "Key": a.ID, "Namespace": "default",
			"Payload": map[string]any{"Allocation": a}, "Topic": "Allocation", "Type": typ,
		}},
		"Index": s.index,
	}
	b, _ := json.Marshal(ev)
	b = append(b, '\n')
	s.events = append(s.events, eventLine{index: s.index, line: b})
	if len(s.events) > 1000 {
		s.events = s.events[len(s.events)-1000:]
	}
	for sub := range s.subs {
		select {
		case sub.ch <- b:
		default: // a slow reader is dropped, as Nomad does
			close(sub.out)
			delete(s.subs, sub)
		}
	}
}

func stub(a *nomad.Allocation) *nomad.AllocationListStub {
	return &nomad.AllocationListStub{
		ID: a.ID, EvalID: a.EvalID, Name: a.Name, Namespace: a.Namespace, NodeID: a.NodeID, NodeName: a.NodeName,
		JobID: a.JobID, JobType: deref(a.Job.Type), JobVersion: deref(a.Job.Version), TaskGroup: a.TaskGroup,
		DesiredStatus: a.DesiredStatus, DesiredDescription: a.DesiredDescription,
		ClientStatus: a.ClientStatus, ClientDescription: a.ClientDescription,
		TaskStates: a.TaskStates, CreateIndex: a.CreateIndex, ModifyIndex: a.ModifyIndex,
		CreateTime: a.CreateTime, ModifyTime: a.ModifyTime,
	}
}

func copyJob(j *nomad.Job) *nomad.Job {
	var cp nomad.Job
	b, _ := json.Marshal(j)
	_ = json.Unmarshal(b, &cp)
	return &cp
}

func uuid(uint64) string { return newUUID() }

func ptr[T any](v T) *T { return &v }

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// GC removes a dead job and its allocations, as Nomad's job GC does (a
// purge keeps the allocations readable for a while; the GC does not).
func (s *Server) GC(jobID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.jobs, jobID)
	for _, aid := range s.byJob[jobID] {
		delete(s.allocs, aid)
	}
	delete(s.byJob, jobID)
}
