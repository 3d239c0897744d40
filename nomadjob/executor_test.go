package nomadjob_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hyperfunc/hyperfunc/api"
	"github.com/hyperfunc/hyperfunc/executor"
	"github.com/hyperfunc/hyperfunc/nomadjob"
	"github.com/hyperfunc/hyperfunc/nomadjob/nomadtest"
)

func TestRegisterUpdateDeregister(t *testing.T) {
	e := newEnv(t)
	f := fn("echo", "echo", "hi")
	e.register(f)
	id := nomadjob.JobID("", f)
	if id != "hf-alice-echo" {
		t.Fatalf("job ID %q", id)
	}
	for _, jid := range []string{id, id + "-big"} {
		j := e.srv.Job(jid)
		if j == nil {
			t.Fatalf("job %s not registered", jid)
		}
		if *j.Type != "batch" || j.ParameterizedJob == nil || j.ParameterizedJob.Payload != "optional" ||
			j.ParameterizedJob.MetaRequired[0] != "call_id" || j.ParameterizedJob.MetaOptional[0] != "hf_key" {
			t.Fatalf("job %s: bad parameterized config %+v", jid, j.ParameterizedJob)
		}
		tg := j.TaskGroups[0]
		if *tg.RestartPolicy.Attempts != 0 || *tg.RestartPolicy.Mode != "fail" || *tg.ReschedulePolicy.Attempts != 0 || *tg.ReschedulePolicy.Unlimited {
			t.Fatalf("job %s: restart/reschedule not 0", jid)
		}
		task := tg.Tasks[0]
		if task.Driver != "docker" || task.Config["runtime"] != "runsc" || task.Config["network_mode"] != "none" || task.Config["image"] != "busybox:1.36" {
			t.Fatalf("job %s: task config %v", jid, task.Config)
		}
		// The default user (nobody) is sealed: the shim runs as root with
		// three capabilities and starts the command as nobody.
		if ep := fmt.Sprint(task.Config["entrypoint"]); ep != "[/local/hf-shim -as 65534:65534 -envelope /local/payload]" {
			t.Fatalf("job %s: entrypoint %v", jid, ep)
		}
		if task.User != "0:0" || fmt.Sprint(task.Config["cap_add"]) != "[SETUID SETGID KILL]" || fmt.Sprint(task.Config["cap_drop"]) != "[ALL]" {
			t.Fatalf("job %s: user %q, cap_add %v, cap_drop %v", jid, task.User, task.Config["cap_add"], task.Config["cap_drop"])
		}
		if task.DispatchPayload.File != "payload" || *task.Resources.CPU != 100 || *task.Resources.MemoryMB != 64 {
			t.Fatalf("job %s: payload/resources", jid)
		}
		if a := task.Artifacts[0]; a.GetterOptions["checksum"] != "sha256:"+e.fe.ShimSHA256 || *a.RelativeDest != "local/" {
			t.Fatalf("job %s: shim artifact %+v", jid, a)
		}
	}
	big := e.srv.Job(id + "-big").TaskGroups[0].Tasks[0].Artifacts
	if len(big) != 2 || !strings.Contains(*big[1].GetterSource, "/v1/artifacts/stdin/${NOMAD_META_call_id}?key=${NOMAD_META_hf_key}") || *big[1].RelativeDest != "local/stdin" {
		t.Fatalf("big job artifacts: %+v", big)
	}

	// Update: register again with a new image.
	f.Image = "busybox:1.37"
	e.register(f)
	if j := e.srv.Job(id); j.TaskGroups[0].Tasks[0].Config["image"] != "busybox:1.37" || *j.Version != 1 {
		t.Fatalf("update not applied: %v version %d", j.TaskGroups[0].Tasks[0].Config["image"], *j.Version)
	}

	if err := e.ex.Deregister(ctx(t), f); err != nil {
		t.Fatal(err)
	}
	if e.srv.Job(id) != nil || e.srv.Job(id+"-big") != nil {
		t.Fatal("deregister left jobs")
	}
	if err := e.ex.Deregister(ctx(t), f); err != nil {
		t.Fatalf("second deregister: %v", err)
	}
}

func TestJobIDSanitize(t *testing.T) {
	a := nomadjob.JobID("", executor.Function{ID: "Bob.X/f", Owner: "Bob.X", Name: "f"})
	b := nomadjob.JobID("", executor.Function{ID: "bob_x/f", Owner: "bob_x", Name: "f"})
	if !strings.HasPrefix(a, "hf-bob-x-f_") || a == b {
		t.Fatalf("sanitize: %q %q", a, b)
	}
}

// TestJobIDOneToOne: user alice-x's function y and user alice's x-y were
// both hf-alice-x-y, one job for two tenants (the last registration's
// image ran both users' calls, with their stdin). Every pair of valid
// owners and names gets its own job, and the other user's calls run in
// their own image.
func TestJobIDOneToOne(t *testing.T) {
	seen := map[string]string{}
	for _, owner := range []string{"alice", "alice-x", "alice-x-y", "a", "a-b"} {
		for _, name := range []string{"y", "x-y", "x-y-z", "b-y", "b", "warm", "x-warm"} {
			f := executor.Function{ID: owner + "/" + name, Owner: owner, Name: name}
			for _, cluster := range []string{"", "c1"} {
				id := nomadjob.JobID(cluster, f)
				if prev, ok := seen[id]; ok {
					t.Fatalf("%s and %s share the job %s", prev, f.ID, id)
				}
				seen[id] = f.ID
				if !strings.Contains(owner, "-") && strings.Contains(id, "_") {
					t.Fatalf("%s: %s (no suffix without a dash in the owner)", f.ID, id)
				}
			}
		}
	}
	e := newEnv(t)
	a := executor.Function{ID: "alice-x/y", Owner: "alice-x", Name: "y", Image: "image-of-alice-x", Command: []string{"cat"}, CPU: 100, MemoryMB: 64}
	b := executor.Function{ID: "alice/x-y", Owner: "alice", Name: "x-y", Image: "image-of-alice", Command: []string{"cat"}, CPU: 100, MemoryMB: 64}
	e.register(a)
	e.register(b)
	for _, f := range []executor.Function{a, b} {
		if img := e.srv.Job(nomadjob.JobID("", f)).TaskGroups[0].Tasks[0].Config["image"]; img != f.Image {
			t.Fatalf("%s's job runs %v", f.ID, img)
		}
	}
}

func TestEchoAndStdin(t *testing.T) {
	e := newEnv(t)
	ev := e.run(fn("cat", "cat"), spec("c1", fn("cat", "cat"), "hello fixture\n"))
	if ev.Kind != executor.Finished || string(ev.Stdout) != "hello fixture\n" || ev.ExitCode != 0 {
		t.Fatalf("cat: %+v", ev)
	}
	if ev.Ref == "" || !strings.HasPrefix(ev.Ref, "hf-alice-cat/dispatch-") {
		t.Fatalf("ref %q", ev.Ref)
	}
	evs := e.col.events("c1")
	if evs[0].Kind != executor.Running || e.col.finals("c1") != 1 {
		t.Fatalf("events: %+v", evs)
	}
	// The child stays until Release (release_test.go).
	if e.srv.Job(ev.Ref) == nil {
		t.Fatal("child purged before Release")
	}
}

func TestEnvAndStderr(t *testing.T) {
	e := newEnv(t)
	f := fn("env", "sh", "-c", `echo "id=$HYPER_CALL_ID x=$X_A"; echo to-stderr >&2`)
	s := spec("c-env", f, "")
	s.Env["X_A"] = "1"
	ev := e.run(f, s)
	if ev.Kind != executor.Finished || string(ev.Stdout) != "id=c-env x=1\n" || ev.Stderr != "to-stderr\n" {
		t.Fatalf("env: %+v stdout %q", ev, ev.Stdout)
	}
}

func TestExitCode(t *testing.T) {
	e := newEnv(t)
	f := fn("exit3", "sh", "-c", "echo partial; exit 3")
	ev := e.run(f, spec("c-exit", f, ""))
	if ev.Kind != executor.Failed || ev.Reason != api.ReasonExit || ev.ExitCode != 3 || string(ev.Stdout) != "partial\n" || ev.Message != "exit code 3" {
		t.Fatalf("exit: %+v", ev)
	}
}

func TestBigStdinThroughArtifact(t *testing.T) {
	e := newEnv(t)
	stdin := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	f := fn("sha", "sha256sum")
	s := spec("c-big", f, string(stdin))
	e.fe.PutStdin("c-big", s.Key, stdin)
	ev := e.run(f, s)
	sum := sha256.Sum256(stdin)
	if ev.Kind != executor.Finished || !strings.HasPrefix(string(ev.Stdout), hex.EncodeToString(sum[:])) {
		t.Fatalf("big stdin: %+v stdout %q", ev, ev.Stdout)
	}
	if !strings.HasPrefix(ev.Ref, "hf-alice-sha-big/dispatch-") {
		t.Fatalf("big call went to %q", ev.Ref)
	}
	if e.fe.Fetches("/v1/artifacts/stdin/c-big") != 1 {
		t.Fatalf("stdin fetched %d times", e.fe.Fetches("/v1/artifacts/stdin/c-big"))
	}
}

func TestEnvelopeTooLarge(t *testing.T) {
	e := newEnv(t)
	f := fn("envy", "true")
	e.register(f)
	s := spec("c-huge", f, "")
	s.Env["HTTP_X_BIG"] = strings.Repeat("v", 20000)
	_, err := e.ex.Start(ctx(t), s)
	if !errors.Is(err, nomadjob.ErrEnvelopeTooLarge) || !errors.Is(err, nomadjob.ErrRefused) || nomadjob.IsUnavailable(err) {
		t.Fatalf("err %v", err)
	}
	if e.srv.Requests("dispatch") != 0 {
		t.Fatal("dispatched anyway")
	}
}

func TestFailureReasons(t *testing.T) {
	cases := []struct {
		name    string
		setup   func(e *env, f *executor.Function, s *executor.Spec)
		command []string
		stdin   string
		reason  string
		msg     string
	}{
		{name: "driver-failure", command: []string{"true"},
			setup: func(e *env, f *executor.Function, s *executor.Spec) {
				f.Image = "hf/does-not-exist:1"
				e.srv.FailPull(f.Image)
			},
			reason: api.ReasonImage, msg: "Driver Failure: Failed to pull `hf/does-not-exist:1`"},
		{name: "artifact-404", command: []string{"cat"}, stdin: strings.Repeat("x", 20000),
			reason: api.ReasonExecutor, msg: "Failed Artifact Download: failed to download artifact"},
		{name: "oom", command: []string{nomadtest.OOMCommand},
			reason: api.ReasonExit, msg: "OOM killed"},
		{name: "lost", command: []string{"true"},
			setup:  func(e *env, f *executor.Function, s *executor.Spec) { e.srv.LoseAllocations(true) },
			reason: api.ReasonLost, msg: "allocation lost: node vm went down"},
		{name: "output", command: []string{"head", "-c", "5000", "/dev/zero"},
			setup:  func(e *env, f *executor.Function, s *executor.Spec) { s.StdoutLimit = 1024 },
			reason: api.ReasonOutput, msg: "output exceeds 1KiB"},
		{name: "timeout", command: []string{"sleep", "10"},
			setup: func(e *env, f *executor.Function, s *executor.Spec) {
				f.Timeout = 200 * time.Millisecond
				s.Function = *f
			},
			reason: api.ReasonTimeout, msg: "timeout"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			f := fn(tc.name, tc.command...)
			s := spec("c-"+tc.name, f, tc.stdin)
			if tc.setup != nil {
				tc.setup(e, &f, &s)
				s.Function = f
			}
			ev := e.run(f, s)
			if ev.Kind != executor.Failed || ev.Reason != tc.reason || !strings.Contains(ev.Message, tc.msg) {
				t.Fatalf("got %v %q %q, want failed %q containing %q", ev.Kind, ev.Reason, ev.Message, tc.reason, tc.msg)
			}
			if tc.reason == api.ReasonOutput && (!ev.Truncated || len(ev.Stdout) != 1024) {
				t.Fatalf("output: truncated %v, %d bytes kept", ev.Truncated, len(ev.Stdout))
			}
			if e.col.finals(s.CallID) != 1 {
				t.Fatalf("%d final events", e.col.finals(s.CallID))
			}
		})
	}
}

func TestLogFallbackWithoutResultFile(t *testing.T) {
	e := newEnv(t)
	f := fn("noshim", nomadtest.NoShimCommand, "from", "the", "log")
	ev := e.run(f, spec("c-log", f, ""))
	if ev.Kind != executor.Finished || string(ev.Stdout) != "from the log\n" {
		t.Fatalf("log fallback: %+v %q", ev, ev.Stdout)
	}
	// The result file path does not depend on the log stream (nomad#6931).
	e.srv.EmptyLogs(true)
	g := fn("cat2", "cat")
	ev = e.run(g, spec("c-nolog", g, "kept\n"))
	if ev.Kind != executor.Finished || string(ev.Stdout) != "kept\n" {
		t.Fatalf("empty logs: %+v %q", ev, ev.Stdout)
	}
}

func TestEventStreamDroppedMidCall(t *testing.T) {
	e := newEnv(t)
	f := fn("drop", "cat")
	e.register(f)
	e.srv.Hold()
	if _, err := e.ex.Start(ctx(t), spec("c-drop", f, "once\n")); err != nil {
		t.Fatal(err)
	}
	// The call ends while its events are lost (aged out of the buffer)...
	e.srv.SilenceEvents(true)
	e.srv.Release()
	waitFor(t, hang, "task ran", func() bool { return e.srv.Executions("c-drop") == 1 })
	// ...then the stream drops; the reconnect re-checks every watched call.
	e.srv.SilenceEvents(false)
	e.srv.DropEventStreams()
	ev := e.col.final(t, "c-drop")
	if ev.Kind != executor.Finished || string(ev.Stdout) != "once\n" {
		t.Fatalf("%+v", ev)
	}
	waitFor(t, time.Second, "no second final event", func() bool { return e.col.finals("c-drop") == 1 })
	if e.srv.Executions("c-drop") != 1 {
		t.Fatal("ran twice")
	}
}

func TestFailoverBetweenDispatchAndRecord(t *testing.T) {
	e := newEnv(t)
	f := fn("fo", "cat")
	e.register(f)
	e.srv.Hold()
	s := spec("c-fo", f, "one execution\n")
	h1, err := e.ex.Start(ctx(t), s)
	if err != nil {
		t.Fatal(err)
	}
	// The old leader dies before recording the handle.
	_ = e.ex.Close()
	ex2, col2 := e.newExecutor()
	// The new leader reconciles (Ref unknown) and finds the child by meta...
	evs, err := ex2.Reconcile(ctx(t), []executor.Handle{{CallID: "c-fo"}})
	if err != nil || len(evs) != 1 || evs[0].Kind != executor.Running || evs[0].Ref != h1.Ref {
		t.Fatalf("reconcile: %+v %v", evs, err)
	}
	// ...and a Start of the same call (same idempotency token) gets the same child.
	h2, err := ex2.Start(ctx(t), s)
	if err != nil || h2.Ref != h1.Ref {
		t.Fatalf("second start: %+v %v (first %q)", h2, err, h1.Ref)
	}
	// A third executor dispatching afresh with the same token too.
	ex3, _ := e.newExecutor()
	h3, err := ex3.Start(ctx(t), s)
	if err != nil || h3.Ref != h1.Ref {
		t.Fatalf("third start: %+v %v", h3, err)
	}
	e.srv.Release()
	ev := col2.final(t, "c-fo")
	if ev.Kind != executor.Finished || string(ev.Stdout) != "one execution\n" {
		t.Fatalf("%+v", ev)
	}
	if n := e.srv.Executions("c-fo"); n != 1 {
		t.Fatalf("executed %d times", n)
	}
}

func TestNomadDownAndBack(t *testing.T) {
	e := newEnv(t)
	f := fn("down", "cat")
	e.register(f)

	// Down (500 No cluster leader): Start and Health fail retryably.
	e.srv.SetDown(true)
	_, err := e.ex.Start(ctx(t), spec("c-down", f, "x\n"))
	if !errors.Is(err, nomadjob.ErrUnavailable) || errors.Is(err, nomadjob.ErrRefused) {
		t.Fatalf("start while down: %v", err)
	}
	if err := e.ex.Health(ctx(t)); !nomadjob.IsUnavailable(err) {
		t.Fatalf("health while down: %v", err)
	}
	// Unreachable: the same.
	e.srv.SetDown(false)
	e.srv.SetUnreachable(true)
	if _, err := e.ex.Start(ctx(t), spec("c-down", f, "x\n")); !nomadjob.IsUnavailable(err) {
		t.Fatalf("start while unreachable: %v", err)
	}
	e.srv.SetUnreachable(false)
	if err := e.ex.Health(ctx(t)); err != nil {
		t.Fatalf("health: %v", err)
	}

	// Down in the middle of a call: nothing is lost.
	e.srv.Hold()
	if _, err := e.ex.Start(ctx(t), spec("c-mid", f, "survived\n")); err != nil {
		t.Fatal(err)
	}
	e.srv.SetDown(true)
	e.srv.Release()
	waitFor(t, hang, "task ran", func() bool { return e.srv.Executions("c-mid") == 1 })
	e.srv.SetDown(false)
	ev := e.col.final(t, "c-mid")
	if ev.Kind != executor.Finished || string(ev.Stdout) != "survived\n" || e.srv.Executions("c-mid") != 1 {
		t.Fatalf("%+v", ev)
	}

	// 500s while collecting are retried.
	e.srv.FailNext("/v1/client/fs/", 3)
	ev = e.run(f, spec("c-flaky", f, "retried\n"))
	if ev.Kind != executor.Finished || string(ev.Stdout) != "retried\n" {
		t.Fatalf("%+v", ev)
	}
}

func TestPermanentRefusals(t *testing.T) {
	e := newEnv(t)
	// Unknown job and a function without image: refused, not retryable.
	f := fn("ghost", "true")
	f.Image = ""
	_, err := e.ex.Start(ctx(t), spec("c-ghost", f, ""))
	if !errors.Is(err, nomadjob.ErrRefused) || nomadjob.IsUnavailable(err) || !strings.Contains(err.Error(), "parameterized job not found") {
		t.Fatalf("unknown job: %v", err)
	}
	// With an image, a missing job is registered again and the call runs.
	g := fn("reborn", "echo", "back")
	if _, err := e.ex.Start(ctx(t), spec("c-reborn", g, "")); err != nil {
		t.Fatal(err)
	}
	if ev := e.col.final(t, "c-reborn"); ev.Kind != executor.Finished || string(ev.Stdout) != "back\n" {
		t.Fatalf("%+v", ev)
	}
}

func TestCancel(t *testing.T) {
	e := newEnv(t)
	f := fn("slow", "sleep", "600")
	e.register(f)
	h, err := e.ex.Start(ctx(t), spec("c-cancel", f, ""))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, hang, "running", func() bool { return len(e.col.events("c-cancel")) > 0 })
	if err := e.ex.Cancel(ctx(t), h); err != nil {
		t.Fatal(err)
	}
	ev := e.col.final(t, "c-cancel")
	if ev.Kind != executor.Failed || ev.Reason != api.ReasonCancelled {
		t.Fatalf("%+v", ev)
	}
	// Stopped, not purged: the token stays taken and a next leader's
	// Reconcile says canceled.
	if j := e.srv.Job(h.Ref); j == nil || j.Stop == nil || !*j.Stop {
		t.Fatalf("child not stopped or purged: %+v", j)
	}
	waitFor(t, time.Second, "one final event", func() bool { return e.col.finals("c-cancel") == 1 })
	// A second Cancel of a reported call reports nothing more.
	if err := e.ex.Cancel(ctx(t), h); err != nil {
		t.Fatal(err)
	}
	ex2, _ := e.newExecutor()
	evs, err := ex2.Reconcile(ctx(t), []executor.Handle{h, {CallID: "c-cancel"}})
	if err != nil {
		t.Fatal(err)
	}
	for i, ev := range evs {
		if ev.Kind != executor.Failed || ev.Reason != api.ReasonCancelled || ev.Ref != h.Ref {
			t.Fatalf("reconcile[%d] of a canceled call: %+v", i, ev)
		}
	}
	if err := ex2.Release(ctx(t), []executor.Handle{h}); err != nil {
		t.Fatal(err)
	}
	if e.srv.Job(h.Ref) != nil {
		t.Fatal("child not purged by Release")
	}
	if n := e.col.finals("c-cancel"); n != 1 {
		t.Fatalf("%d final events", n)
	}
}

func TestReconcile(t *testing.T) {
	e := newEnv(t)
	f := fn("rec", "cat")
	e.register(f)
	// A finished call that nobody collected (its executor died).
	ex1, _ := e.newExecutor()
	h1, err := ex1.Start(ctx(t), spec("c-done", f, "done\n"))
	if err != nil {
		t.Fatal(err)
	}
	_ = ex1.Close()
	waitFor(t, hang, "ran", func() bool { return e.srv.Executions("c-done") == 1 })
	// It may still be finishing: the alloc turns terminal right after it ran.
	waitFor(t, hang, "terminal", func() bool {
		j := e.srv.Job(h1.Ref)
		return j != nil && *j.Status == "dead"
	})
	// A running call.
	e.srv.Hold()
	h2, err := ex1Start(e, f, "c-run")
	if err != nil {
		t.Fatal(err)
	}
	ex2, col2 := e.newExecutor()
	evs, err := ex2.Reconcile(ctx(t), []executor.Handle{
		h1,
		{CallID: "c-run", Ref: h2.Ref},
		{CallID: "c-never"},
		{CallID: "c-gone", Ref: "hf-alice-rec/dispatch-1-deadbeef"},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		kind   executor.Kind
		reason string
	}{{executor.Finished, ""}, {executor.Running, ""}, {executor.NotFound, ""}, {executor.Failed, api.ReasonLost}}
	for i, w := range want {
		if evs[i].Kind != w.kind || evs[i].Reason != w.reason {
			t.Fatalf("reconcile[%d] = %+v, want %v %q", i, evs[i], w.kind, w.reason)
		}
	}
	// Collected from the dead child, which stays until Release.
	if string(evs[0].Stdout) != "done\n" || e.srv.Job(h1.Ref) == nil {
		t.Fatalf("collected %q, child purged: %v", evs[0].Stdout, e.srv.Job(h1.Ref) == nil)
	}
	if err := ex2.Release(ctx(t), []executor.Handle{h1}); err != nil || e.srv.Job(h1.Ref) != nil {
		t.Fatalf("release: %v, child left: %v", err, e.srv.Job(h1.Ref) != nil)
	}
	e.srv.Release()
	if ev := col2.final(t, "c-run"); ev.Kind != executor.Finished {
		t.Fatalf("%+v", ev)
	}
}

// ex1Start starts a call on a throwaway executor that dies at once.
func ex1Start(e *env, f executor.Function, callID string) (executor.Handle, error) {
	ex, _ := e.newExecutor()
	defer ex.Close()
	return ex.Start(ctx(e.t), spec(callID, f, ""))
}

func TestPull(t *testing.T) {
	e := newEnv(t)
	if err := e.ex.Pull(ctx(t), "busybox:1.36"); err != nil {
		t.Fatalf("pull: %v", err)
	}
	if e.srv.Job(nomadjob.PullJobID("", "busybox:1.36")) != nil {
		t.Fatal("pull job left behind")
	}
	e.srv.FailPull("hf/nope:1")
	err := e.ex.Pull(ctx(t), "hf/nope:1")
	if err == nil || !strings.Contains(err.Error(), "Failed to pull `hf/nope:1`") {
		t.Fatalf("failed pull: %v", err)
	}
}

// TestLinkedOutputNotRead: a task that leaves its stdout, stderr preview or
// result.json as a link to a host file (the real client's fs/cat follows
// links, as root) fails with a message, and the host file's content is in
// no part of the outcome.
func TestLinkedOutputNotRead(t *testing.T) {
	secret := filepath.Join(t.TempDir(), "host-secret")
	if err := os.WriteFile(secret, []byte("HOST-SECRET-CONTENT"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"stdout", "stderr", "result.json"} {
		e := newEnv(t)
		f := fn("link-"+strings.TrimSuffix(name, ".json"), nomadtest.LinkCommand, name, secret)
		ev := e.run(f, spec("c-link-"+strings.TrimSuffix(name, ".json"), f, ""))
		if ev.Kind != executor.Failed || !strings.Contains(ev.Message, "a link, a special file") || !strings.Contains(ev.Message, "alloc/data/"+name) {
			t.Fatalf("%s as a link: %+v", name, ev)
		}
		if strings.Contains(fmt.Sprintf("%+v %s %s", ev, ev.Stdout, ev.Stderr), "HOST-SECRET") {
			t.Fatalf("%s as a link: the host file reached the outcome: %+v", name, ev)
		}
	}
	// The same call without the link reads its outputs.
	e := newEnv(t)
	f := fn("plain", "cat")
	if ev := e.run(f, spec("c-plain", f, "ok")); ev.Kind != executor.Finished || string(ev.Stdout) != "ok" {
		t.Fatalf("plain call: %+v", ev)
	}
}

// TestManyFilesNotListed: a task that fills alloc/data with names makes
// fs/ls answer megabytes; the executor reads at most MaxListing of it and
// fails the call instead of decoding the rest.
func TestManyFilesNotListed(t *testing.T) {
	e := newEnv(t)
	n := nomadjob.MaxListing/200 + 100
	f := fn("many", nomadtest.ManyFilesCommand, fmt.Sprint(n))
	ev := e.run(f, spec("c-many", f, ""))
	if ev.Kind != executor.Failed || !strings.Contains(ev.Message, "directory listing too large") {
		t.Fatalf("%d files: %+v", n, ev)
	}
}

// TestAllJobIDsOneToOne: every job ID the executor registers (a
// function's job, its -big and _warm jobs, an image's pull job), in one
// cluster or across two that share a Nomad (one of them without a cluster
// ID), names one thing only. Found in review: alice's function x-big and
// alice/x's big job were both hf-alice-x-big (Register of one replaced the
// other's job, Deregister of x purged x-big's); user "pull"'s function
// <12 hex> was an image's pull job (each pull purged it); and with no
// cluster ID, owner <tag of c1>'s function alice-y was cluster c1's
// alice/y.
func TestAllJobIDsOneToOne(t *testing.T) {
	image := "registry.example/app:1"
	sum := sha256.Sum256([]byte(image))
	pullName := hex.EncodeToString(sum[:6])
	tag := nomadjob.ClusterTag("c1")
	seen := map[string]string{}
	add := func(id, what string) {
		t.Helper()
		if prev, ok := seen[id]; ok {
			t.Fatalf("%s and %s are both the job %s", prev, what, id)
		}
		seen[id] = what
	}
	for _, cluster := range []string{"", "c1"} {
		add(nomadjob.PullJobID(cluster, image), cluster+": pull of "+image)
		for _, owner := range []string{"alice", "alice-x", "pull", tag, "a"} {
			for _, name := range []string{"y", "x", "x-big", "x-y", "alice-y", "alice-x-big", "y-big", "big", pullName, "warm", "x-warm"} {
				f := executor.Function{ID: owner + "/" + name, Owner: owner, Name: name}
				add(nomadjob.JobID(cluster, f), cluster+": "+f.ID)
				add(nomadjob.BigJobID(cluster, f), cluster+": "+f.ID+" big")
				add(nomadjob.WarmJobID(cluster, f), cluster+": "+f.ID+" warm")
			}
		}
	}
}

// TestColdStderrPreviewFromShim: the stderr preview of a cold call comes
// from the shim's file in alloc/data, not from Nomad's log stream, which
// loses the output of short tasks (nomad#6931; EmptyLogs plays that).
func TestColdStderrPreviewFromShim(t *testing.T) {
	e := newEnv(t)
	e.srv.EmptyLogs(true)
	f := fn("stderr", "sh", "-c", "echo partial; echo something broke >&2; exit 3")
	ev := e.run(f, spec("c-stderr", f, ""))
	if ev.Kind != executor.Failed || ev.ExitCode != 3 || !strings.Contains(ev.Stderr, "something broke") {
		t.Fatalf("final = %v exit %d stderr %q, want exit 3 with the stderr preview", ev.Kind, ev.ExitCode, ev.Stderr)
	}
}
