package nomadtest

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"time"

	nomad "github.com/hashicorp/nomad/api"
)

// Task is what a Runner gets: the task as the docker driver would start it.
type Task struct {
	AllocID  string
	JobID    string
	ParentID string
	Image    string
	Config   map[string]any
	Meta     map[string]string
	// Local holds the files of the task's local/ directory: "payload" (the
	// dispatch payload), artifacts ("stdin", "hf-shim").
	Local map[string][]byte
	// MemoryMB is the task's memory limit.
	MemoryMB int
}

// Result is what became of a task.
type Result struct {
	ExitCode int
	Signal   int
	Stdout   []byte // the container's stdout and stderr (fs/logs)
	Stderr   []byte
	// Files are written into the allocation directory, by alloc-relative
	// path ("alloc/data/stdout").
	Files map[string][]byte
	// Links are symbolic links a hostile task left, by alloc-relative
	// path, to a host file whose content is given: the real client's
	// fs/stat and fs/cat follow them (stat shows the target's mode), only
	// fs/ls shows an "L" mode.
	Links     map[string][]byte
	OOMKilled bool
	// DriverError fails the task before it starts (Driver Failure).
	DriverError string
	// Killed: the task was stopped (job deregistered) while running.
	Killed bool
}

// Runner runs one task. ctx ends when the job is stopped.
type Runner func(ctx context.Context, t *Task) Result

// place creates the allocation of a job and runs it.
func (s *Server) place(job *nomad.Job) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	idx := s.bump()
	id := newUUID()
	now := time.Now()
	task := job.TaskGroups[0].Tasks[0]
	a := &nomad.Allocation{
		ID: id, Namespace: "default", EvalID: newUUID(), Name: deref(job.ID) + ".g[0]",
		NodeID: NodeID, NodeName: NodeName, JobID: deref(job.ID), Job: job, TaskGroup: deref(job.TaskGroups[0].Name),
		DesiredStatus: "run", ClientStatus: "pending", ClientDescription: "No tasks have started",
		TaskResources: map[string]*nomad.Resources{task.Name: task.Resources},
		CreateIndex:   idx, ModifyIndex: idx, AllocModifyIndex: idx,
		CreateTime: now.UnixNano(), ModifyTime: now.UnixNano(),
	}
	s.allocs[id] = &allocRec{a: a, files: map[string][]byte{}}
	s.byJob[a.JobID] = append(s.byJob[a.JobID], id)
	s.publish(a, "PlanResult")
	ctx, cancel := context.WithCancel(context.Background())
	s.cancels[id] = cancel
	runner := s.Runner
	if runner == nil {
		runner = DefaultRunner
	}
	s.wg.Add(1)
	s.mu.Unlock()
	go func() {
		defer s.wg.Done()
		defer cancel()
		s.run(ctx, id, job, task, runner)
		s.mu.Lock()
		delete(s.cancels, id)
		s.mu.Unlock()
	}()
}

// update changes an allocation under the lock and publishes it.
func (s *Server) update(id string, f func(a *nomad.Allocation, ts *nomad.TaskState)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rec := s.allocs[id]
	ts := rec.a.TaskStates["fn"]
	if ts == nil {
		if rec.a.TaskStates == nil {
			rec.a.TaskStates = map[string]*nomad.TaskState{}
		}
		ts = &nomad.TaskState{State: "pending", Events: []*nomad.TaskEvent{}}
		rec.a.TaskStates["fn"] = ts
	}
	// Copy so that JSON written earlier (events, responses) stays as it was.
	na := *rec.a
	nts := *ts
	nts.Events = append([]*nomad.TaskEvent(nil), ts.Events...)
	na.TaskStates = map[string]*nomad.TaskState{"fn": &nts}
	f(&na, &nts)
	idx := s.bump()
	na.ModifyIndex = idx
	na.ModifyTime = time.Now().UnixNano()
	rec.a = &na
	if job := s.jobs[na.JobID]; job != nil {
		switch na.ClientStatus {
		case "running":
			job.Status = ptr("running")
		case "complete", "failed", "lost":
			job.Status = ptr("dead")
		}
	}
	s.publish(&na, "AllocationUpdated")
}

func taskEvent(typ, display string, details map[string]string) *nomad.TaskEvent {
	if details == nil {
		details = map[string]string{}
	}
	return &nomad.TaskEvent{Type: typ, Time: time.Now().UnixNano(), DisplayMessage: display, Details: details}
}

func (s *Server) run(ctx context.Context, id string, job *nomad.Job, task *nomad.Task, runner Runner) {
	s.update(id, func(a *nomad.Allocation, ts *nomad.TaskState) {
		ts.Events = append(ts.Events, taskEvent("Received", "Task received by client", nil))
		te := taskEvent("Task Setup", "Building Task Directory", map[string]string{"message": "Building Task Directory"})
		te.Message = "Building Task Directory"
		ts.Events = append(ts.Events, te)
	})
	s.mu.Lock()
	lose, hold := s.loseAllocs, s.holdAllocs
	image, _ := task.Config["image"].(string)
	pullErr := s.failPull[image]
	s.mu.Unlock()
	if lose {
		s.update(id, func(a *nomad.Allocation, ts *nomad.TaskState) {
			a.ClientStatus, a.DesiredStatus = "lost", "stop"
			a.ClientDescription, a.DesiredDescription = "alloc is lost since its node is down", "alloc is lost since its node is down"
			ts.State = "dead"
			ts.Failed = true
			ts.FinishedAt = time.Now().UTC()
		})
		return
	}
	fail := func(evs ...*nomad.TaskEvent) {
		s.update(id, func(a *nomad.Allocation, ts *nomad.TaskState) {
			ts.Events = append(ts.Events, evs...)
			nr := taskEvent("Not Restarting", "Policy allows no restarts", map[string]string{"fails_task": "true", "restart_reason": "Policy allows no restarts"})
			nr.FailsTask, nr.RestartReason = true, "Policy allows no restarts"
			ts.Events = append(ts.Events, nr)
			ts.State, ts.Failed, ts.FinishedAt = "dead", true, time.Now().UTC()
			a.ClientStatus, a.ClientDescription = "failed", "Failed tasks"
		})
	}
	local := map[string][]byte{}
	if job.Payload != nil && task.DispatchPayload != nil {
		local[task.DispatchPayload.File] = job.Payload
	}
	if len(task.Artifacts) > 0 {
		s.update(id, func(a *nomad.Allocation, ts *nomad.TaskState) {
			ts.Events = append(ts.Events, taskEvent("Downloading Artifacts", "Client is downloading artifacts", nil))
		})
		for _, art := range task.Artifacts {
			if err := s.fetchArtifact(ctx, art, job.Meta, local); err != nil {
				msg := fmt.Sprintf("failed to download artifact %q: getter subprocess failed: exit status 1: failed to download artifact: %v", deref(art.GetterSource), err)
				te := taskEvent("Failed Artifact Download", msg, map[string]string{"download_error": msg})
				te.DownloadError = msg
				fail(te)
				return
			}
		}
	}
	if msg := validateDockerConfig(task.Config); msg != "" {
		te := taskEvent("Failed Validation", msg, map[string]string{"validation_error": msg})
		te.ValidationError = msg
		fail(te)
		return
	}
	if pullErr != "" {
		te := taskEvent("Driver Failure", pullErr, map[string]string{"driver_error": pullErr})
		te.DriverError = pullErr
		fail(taskEvent("Driver", "Downloading image", map[string]string{"image": image}), te)
		return
	}
	if hold != nil {
		select {
		case <-hold:
		case <-ctx.Done():
		}
	}
	started := time.Now().UTC()
	s.update(id, func(a *nomad.Allocation, ts *nomad.TaskState) {
		ts.Events = append(ts.Events, taskEvent("Started", "Task started by client", nil))
		ts.State, ts.StartedAt = "running", started
		a.ClientStatus, a.ClientDescription = "running", "Tasks are running"
	})
	meta := job.Meta
	callID := meta["call_id"]
	if isWarmTask(task) {
		// The shim is up and waits for its envelope (hf-shim -wait -ready).
		s.mu.Lock()
		s.allocs[id].files["alloc/data/.hf-ready"] = []byte{}
		s.bump()
		s.mu.Unlock()
		envelope, ok := s.warmEnvelope(ctx, deref(job.ID))
		if !ok {
			// Stopped before its call: the shim exits without running
			// anything (ErrWaitStopped).
			s.update(id, func(a *nomad.Allocation, ts *nomad.TaskState) {
				term := taskEvent("Terminated", "Exit Code: 126", map[string]string{"exit_code": "126"})
				term.ExitCode = 126
				ts.Events = append(ts.Events, taskEvent("Killing", "Sent interrupt. Waiting 5s before force killing", nil), term, taskEvent("Killed", "Task successfully killed", nil))
				ts.State, ts.FinishedAt = "dead", time.Now().UTC()
				a.DesiredStatus, a.DesiredDescription = "stop", "alloc not needed due to job update"
				a.ClientStatus, a.ClientDescription = "complete", "All tasks have completed"
			})
			return
		}
		crash, delivered := s.takeCrash()
		if crash && !delivered {
			// Died before the template rendered: no Signaling event.
			fail(taskEvent("Terminated", "Exit Code: 2", map[string]string{"exit_code": "2"}))
			return
		}
		// The client re-rendered the template and sent its change signal.
		s.update(id, func(a *nomad.Allocation, ts *nomad.TaskState) {
			ts.Events = append(ts.Events, taskEvent(nomad.TaskSignaling, "Template re-rendered", nil))
		})
		if crash {
			// Died after the signal: the function may have run, or
			// crashed its shim and removed .started itself.
			s.mu.Lock()
			if cid := warmCallID(envelope); cid != "" {
				s.runs[cid]++
			}
			s.mu.Unlock()
			fail(taskEvent("Terminated", "Exit Code: 134", map[string]string{"exit_code": "134"}))
			return
		}
		local["payload"] = envelope
		callID = warmCallID(envelope)
	}
	s.mu.Lock()
	if callID != "" {
		s.runs[callID]++
	}
	s.mu.Unlock()
	mem := 0
	if task.Resources != nil && task.Resources.MemoryMB != nil {
		mem = *task.Resources.MemoryMB
	}
	res := runner(ctx, &Task{
		AllocID: id, JobID: deref(job.ID), ParentID: deref(job.ParentID), Image: image,
		Config: task.Config, Meta: meta, Local: local, MemoryMB: mem,
	})
	if ctx.Err() != nil {
		res.Killed = true
	}
	if res.DriverError != "" {
		te := taskEvent("Driver Failure", res.DriverError, map[string]string{"driver_error": res.DriverError})
		te.DriverError = res.DriverError
		fail(te)
		return
	}
	s.mu.Lock()
	rec := s.allocs[id]
	rec.stdout = append(rec.stdout, res.Stdout...)
	rec.stderr = append(rec.stderr, res.Stderr...)
	for p, b := range res.Files {
		rec.files[p] = b
	}
	for p, b := range res.Links {
		rec.files[p] = b
		if rec.links == nil {
			rec.links = map[string]bool{}
		}
		rec.links[p] = true
	}
	holdEnd := s.holdEnds
	s.mu.Unlock()
	if holdEnd != nil {
		select {
		case <-holdEnd:
		case <-ctx.Done():
		}
	}
	details := map[string]string{
		"exit_code": fmt.Sprint(res.ExitCode), "oom_killed": fmt.Sprint(res.OOMKilled), "signal": fmt.Sprint(res.Signal),
	}
	display := fmt.Sprintf("Exit Code: %d", res.ExitCode)
	if res.ExitCode != 0 {
		msg := fmt.Sprintf("Docker container exited with non-zero exit code: %d", res.ExitCode)
		details["exit_message"] = msg
		display = fmt.Sprintf("Exit Code: %d, Exit Message: %q", res.ExitCode, msg)
	}
	if res.OOMKilled {
		display += ", OOM Killed"
	}
	term := taskEvent("Terminated", display, details)
	term.ExitCode, term.Signal = res.ExitCode, res.Signal
	if res.ExitCode != 0 {
		term.Message = details["exit_message"]
	}
	if res.Killed {
		s.update(id, func(a *nomad.Allocation, ts *nomad.TaskState) {
			ts.Events = append(ts.Events, taskEvent("Killing", "Sent interrupt. Waiting 5s before force killing", nil), term, taskEvent("Killed", "Task successfully killed", nil))
			ts.State, ts.FinishedAt = "dead", time.Now().UTC()
			a.DesiredStatus, a.DesiredDescription = "stop", "alloc not needed due to job update"
			a.ClientStatus, a.ClientDescription = "complete", "All tasks have completed"
		})
		return
	}
	if res.ExitCode != 0 || res.OOMKilled {
		fail(term)
		return
	}
	s.update(id, func(a *nomad.Allocation, ts *nomad.TaskState) {
		ts.Events = append(ts.Events, term)
		ts.State, ts.FinishedAt = "dead", time.Now().UTC()
		a.ClientStatus, a.ClientDescription = "complete", "All tasks have completed"
	})
}

func terminal(status string) bool {
	return status == "complete" || status == "failed" || status == "lost"
}

// fetchArtifact downloads an artifact as a Nomad client would: meta
// interpolated into the source, checksum option verified, tar.gz unpacked.
func (s *Server) fetchArtifact(ctx context.Context, art *nomad.TaskArtifact, meta map[string]string, local map[string][]byte) error {
	src := deref(art.GetterSource)
	for k, v := range meta {
		src = strings.ReplaceAll(src, "${NOMAD_META_"+k+"}", v)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, src, nil)
	if err != nil {
		return err
	}
	resp, err := s.HTTPClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("bad response code: %d", resp.StatusCode)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if sum := art.GetterOptions["checksum"]; sum != "" {
		want := strings.TrimPrefix(sum, "sha256:")
		got := sha256.Sum256(body)
		if hex.EncodeToString(got[:]) != want {
			return fmt.Errorf("Checksums did not match for %s.\nExpected: %s\nGot: %s", src, want, hex.EncodeToString(got[:]))
		}
	}
	dest := strings.TrimPrefix(strings.TrimPrefix(deref(art.RelativeDest), "local/"), "local")
	path := req.URL.Path
	if deref(art.GetterMode) != "file" && strings.HasSuffix(path, ".tar.gz") {
		gz, err := gzip.NewReader(bytes.NewReader(body))
		if err != nil {
			return err
		}
		tr := tar.NewReader(gz)
		for {
			h, err := tr.Next()
			if err == io.EOF {
				return nil
			}
			if err != nil {
				return err
			}
			b, err := io.ReadAll(tr)
			if err != nil {
				return err
			}
			if h.FileInfo().Mode()&0o111 == 0 {
				return fmt.Errorf("%s: not executable in the archive", h.Name)
			}
			local[strings.TrimPrefix(dest+"/"+h.Name, "/")] = b
		}
	}
	local[dest] = body
	return nil
}

// validateDockerConfig checks the docker driver config as the client's
// driver does when the task starts (the server's job validation does not):
// the attribute types the executor's jobs use. The text is the driver's.
func validateDockerConfig(cfg map[string]any) string {
	listOf := func(v any, elem func(any) bool) bool {
		l, ok := v.([]any)
		if !ok {
			return false
		}
		for _, e := range l {
			if !elem(e) {
				return false
			}
		}
		return true
	}
	isString := func(v any) bool { _, ok := v.(string); return ok }
	isStringMap := func(v any) bool {
		m, ok := v.(map[string]any)
		if !ok {
			return false
		}
		for _, e := range m {
			if !isString(e) {
				return false
			}
		}
		return true
	}
	var bad []string
	if v, ok := cfg["labels"]; ok && !listOf(v, isStringMap) {
		bad = append(bad, `Inappropriate value for attribute "labels": list of map of string required.`)
	}
	for _, k := range []string{"cap_drop", "cap_add", "security_opt", "entrypoint"} {
		if v, ok := cfg[k]; ok && !listOf(v, isString) {
			bad = append(bad, fmt.Sprintf("Inappropriate value for attribute %q: list of string required.", k))
		}
	}
	if v, ok := cfg["pids_limit"]; ok {
		if _, num := v.(float64); !num {
			bad = append(bad, `Inappropriate value for attribute "pids_limit": number required.`)
		}
	}
	if len(bad) == 0 {
		return ""
	}
	sort.Strings(bad)
	return "failed to parse config: \n\t* Incorrect attribute value type: " + strings.Join(bad, "\n\t* Incorrect attribute value type: ")
}
