package nomadtest

import (
	"context"
	"encoding/json"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	nomad "github.com/hashicorp/nomad/api"

	"github.com/hyperfunc/hyperfunc/shim"
)

// Nomad variables as Nomad 1.6.5 answers them (checked on the real agent):
// PUT /v1/var/<path>[?cas=N] answers 200 with the variable (items
// included), or 409 with the existing variable (JSON, sent as
// text/plain) when the check-and-set fails (cas=0: one exists); GET answers 404 "variable not found" for a
// missing path; DELETE answers 204, also for a missing path; GET
// /v1/vars?prefix= lists the metadata (no items) sorted by path; more than
// 64 KiB of items is a 500 "variables are limited to 64KiB in total size".

// maxVariableBytes is Nomad's cap on a variable's items.
const maxVariableBytes = 64 << 10

// variable serves /v1/var/<path>.
func (s *Server) variable(w http.ResponseWriter, r *http.Request, path string) {
	switch r.Method {
	case http.MethodGet:
		s.count("var")
		s.mu.Lock()
		v := s.vars[path]
		s.mu.Unlock()
		if v == nil {
			textError(w, http.StatusNotFound, "variable not found")
			return
		}
		writeJSON(w, v.ModifyIndex, v, true)
	case http.MethodPut, http.MethodPost:
		s.count("var/put")
		if len(path) > 128 || strings.ContainsAny(path, ".:@ ") {
			textError(w, http.StatusInternalServerError, "invalid path \""+path+"\"")
			return
		}
		var in nomad.Variable
		if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
			textError(w, http.StatusBadRequest, err.Error())
			return
		}
		size := 0
		for k, v := range in.Items {
			size += len(k) + len(v)
		}
		if size > maxVariableBytes {
			textError(w, http.StatusInternalServerError, "variables are limited to 64KiB in total size")
			return
		}
		s.mu.Lock()
		old := s.vars[path]
		if c := r.URL.Query().Get("cas"); c != "" {
			want, _ := strconv.ParseUint(c, 10, 64)
			if (want == 0 && old != nil) || (want != 0 && (old == nil || old.ModifyIndex != want)) {
				s.mu.Unlock()
				conflict := old
				if conflict == nil {
					conflict = &nomad.Variable{Namespace: "default", Path: path}
				}
				// The agent sends the JSON with a text/plain content type
				// and the index (conformance_test.go).
				w.Header().Set("Content-Type", "text/plain; charset=utf-8")
				w.Header().Set("X-Nomad-Index", strconv.FormatUint(conflict.ModifyIndex, 10))
				w.WriteHeader(http.StatusConflict)
				_ = json.NewEncoder(w).Encode(conflict)
				return
			}
		}
		idx := s.bump()
		now := time.Now().UnixNano()
		v := &nomad.Variable{Namespace: "default", Path: path, Items: in.Items, ModifyIndex: idx, ModifyTime: now, CreateIndex: idx, CreateTime: now}
		if old != nil {
			v.CreateIndex, v.CreateTime = old.CreateIndex, old.CreateTime
		}
		s.vars[path] = v
		s.mu.Unlock()
		writeJSON(w, idx, v, false)
	case http.MethodDelete:
		s.count("var/delete")
		s.mu.Lock()
		delete(s.vars, path)
		idx := s.bump()
		s.mu.Unlock()
		w.Header().Set("X-Nomad-Index", strconv.FormatUint(idx, 10))
		w.WriteHeader(http.StatusNoContent)
	default:
		textError(w, http.StatusMethodNotAllowed, "Invalid method")
	}
}

// listVariables serves /v1/vars?prefix=.
func (s *Server) listVariables(w http.ResponseWriter, r *http.Request) {
	s.count("vars")
	prefix := r.URL.Query().Get("prefix")
	s.mu.Lock()
	out := []*nomad.VariableMetadata{}
	for p, v := range s.vars {
		if strings.HasPrefix(p, prefix) {
			out = append(out, v.Metadata())
		}
	}
	idx := s.index
	s.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	writeJSON(w, idx, out, true)
}

// Variable returns the items of the variable at path (nil: none), for
// tests.
func (s *Server) Variable(path string) map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if v := s.vars[path]; v != nil {
		return v.Items
	}
	return nil
}

// warmEnvelope plays a warm task's template: it waits until the variable
// nomad/jobs/<job ID> exists and returns its envelope item, as the
// client renders it into local/ and rings SIGUSR1. ok false: the task
// was stopped first.
func (s *Server) warmEnvelope(ctx context.Context, jobID string) ([]byte, bool) {
	path := "nomad/jobs/" + jobID
	for {
		s.mu.Lock()
		v := s.vars[path]
		changed := s.changed
		s.mu.Unlock()
		if v != nil && v.Items["envelope"] != "" && !s.hideVars {
			return []byte(v.Items["envelope"]), true
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return nil, false
		}
	}
}

// isWarmTask: the task renders its envelope from a variable (a template
// with change_mode signal) instead of a dispatch payload.
func isWarmTask(t *nomad.Task) bool {
	for _, tpl := range t.Templates {
		if tpl != nil && deref(tpl.ChangeMode) == "signal" && strings.Contains(deref(tpl.EmbeddedTmpl), "nomadVar") {
			return true
		}
	}
	return false
}

// warmCallID is the call ID of a warm task's envelope.
func warmCallID(envelope []byte) string {
	en, err := shim.DecodeEnvelope(envelope)
	if err != nil {
		return ""
	}
	return en.CallID
}

// HideVariables makes warm tasks' templates see no variable, as on a
// Nomad with ACLs where the warm job has no policy.
func (s *Server) HideVariables(on bool) {
	s.mu.Lock()
	s.hideVars = on
	s.bump()
	s.mu.Unlock()
}

// CrashWarmTasks makes the next n warm tasks that get their envelope exit
// at once without running it (no .started, no result), as a sandbox that
// dies between its claim and the template's render.
func (s *Server) CrashWarmTasks(n int) {
	s.mu.Lock()
	s.crashWarm = n
	s.mu.Unlock()
}

// CrashWarmTasksDelivered makes the next n warm tasks exit after the
// template delivered their envelope (the Signaling event is there), with
// no .started and no result: a function that removed .started and crashed
// its shim. The double counts it as a run.
func (s *Server) CrashWarmTasksDelivered(n int) {
	s.mu.Lock()
	s.crashDelivered = n
	s.mu.Unlock()
}

// takeCrash reports whether this warm task is one to crash, and whether
// after the delivery.
func (s *Server) takeCrash() (crash, delivered bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.crashWarm > 0 {
		s.crashWarm--
		return true, false
	}
	if s.crashDelivered > 0 {
		s.crashDelivered--
		return true, true
	}
	return false, false
}
