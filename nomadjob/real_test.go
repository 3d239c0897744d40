package nomadjob_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/client"
	nomad "github.com/hashicorp/nomad/api"

	"github.com/hyperfunc/hyperfunc/executor"
	"github.com/hyperfunc/hyperfunc/nomadjob"
	"github.com/hyperfunc/hyperfunc/nomadjob/nomadtest"
)

// The job spec is checked by Nomad itself. /v1/validate/job checks the job's
// structure but not the docker driver's config: it accepts labels as a map
// and unknown keys alike ("DriverConfigValidated": true); the client parses
// the driver config only when the task starts ("Failed Validation"). So
// every job the executor builds is validated AND run on the real agent:
// the function job, its -big variant and the pull job, with the shim as an
// artifact and from the client's host volume.

// realEnv is an executor on the real agent with a frontend serving the shim
// archive and big stdin on loopback.
type realEnv struct {
	t  *testing.T
	nc *nomad.Client
	fe *nomadtest.Frontend
	ex *nomadjob.Executor
	co *collector
	// cluster is the executor's ClusterID.
	cluster string
}

func realImage() string {
	if v := os.Getenv("HF_NOMAD_IMAGE"); v != "" {
		return v
	}
	return "ubuntu" // the busybox stand-in scripts/setup-docker.sh loads
}

var shimArchiveOnce struct {
	archive []byte
	err     error
	done    bool
}

func realShimArchive(t *testing.T) []byte {
	t.Helper()
	s := &shimArchiveOnce
	if !s.done {
		s.done = true
		out := filepath.Join(os.TempDir(), fmt.Sprintf("hf-shim-nomadjob-%d", os.Getpid()))
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", out, "github.com/hyperfunc/hyperfunc/cmd/hf-shim")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if msg, err := cmd.CombinedOutput(); err != nil {
			s.err = fmt.Errorf("building the shim: %v\n%s", err, msg)
		} else {
			bin, err := os.ReadFile(out)
			_ = os.Remove(out)
			if err == nil {
				s.archive, _, err = nomadjob.ShimArchive(bin)
			}
			s.err = err
		}
	}
	if s.err != nil {
		t.Fatal(s.err)
	}
	return s.archive
}

func newRealEnv(t *testing.T, shimVolume, cluster string) *realEnv {
	t.Helper()
	addr := nomadtest.RealAddr(t)
	fe := nomadtest.NewFrontend(t, nomadjob.DefaultShimArtifactPath, realShimArchive(t))
	ex, err := nomadjob.New(nomadjob.Config{
		Address: addr, Token: os.Getenv("NOMAD_TOKEN"), ArtifactBaseURL: fe.URL, ShimSHA256: fe.ShimSHA256,
		ShimVolume: shimVolume, ClusterID: cluster,
		RecheckInterval: 5 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	co := newCollector(ex.Events())
	t.Cleanup(func() { _ = ex.Close(); co.stop() })
	cfg := nomad.DefaultConfig()
	cfg.Address = addr
	cfg.SecretID = os.Getenv("NOMAD_TOKEN")
	nc, err := nomad.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	// The calls' records (where each ran) go with the test: these tests
	// do not Release every call.
	t.Cleanup(func() {
		vs, _, err := nc.Variables().PrefixList(nomadjob.CallRecordPrefix(cluster), nil)
		if err != nil {
			return
		}
		for _, v := range vs {
			_, _ = nc.Variables().Delete(v.Path, nil)
		}
	})
	return &realEnv{t: t, nc: nc, fe: fe, ex: ex, co: co, cluster: cluster}
}

func (r *realEnv) validate(job *nomad.Job) {
	r.t.Helper()
	resp, _, err := r.nc.Jobs().Validate(job, nil)
	if err != nil {
		r.t.Fatalf("validate %s: %v", *job.ID, err)
	}
	if resp.Error != "" || len(resp.ValidationErrors) > 0 {
		r.t.Fatalf("validate %s: %s %v", *job.ID, resp.Error, resp.ValidationErrors)
	}
}

// final waits for a call's final event with a deadline generous enough for
// a busy machine (real containers under gVisor).
func (r *realEnv) final(callID string) executor.Event {
	r.t.Helper()
	var ev executor.Event
	waitFor(r.t, 3*time.Minute, "final event of "+callID, func() bool {
		for _, e := range r.co.events(callID) {
			if isFinal(e.Kind) {
				ev = e
				return true
			}
		}
		return false
	})
	return ev
}

func (r *realEnv) run(f executor.Function, s executor.Spec) executor.Event {
	r.t.Helper()
	r.fe.PutStdin(s.CallID, s.Key, s.Stdin)
	if _, err := r.ex.Start(ctx(r.t), s); err != nil {
		r.t.Fatalf("start %s: %v", s.CallID, err)
	}
	return r.final(s.CallID)
}

func TestRealNomadRunsEveryJob(t *testing.T) {
	for _, mode := range []struct{ name, volume string }{
		{"artifact", ""},
		{"hostvolume", nomadtest.ShimVolume()},
	} {
		t.Run(mode.name, func(t *testing.T) {
			if mode.volume == "" && mode.name == "hostvolume" {
				t.Skip("HF_NOMAD_SHIM_VOLUME=-: no shim host volume on the agent")
			}
			cluster := "cluster-" + mode.name + "-" + fmt.Sprint(time.Now().UnixNano())
			r := newRealEnv(t, mode.volume, cluster)
			nobody := executor.Function{
				ID: "real/id-" + mode.name, Owner: "real", Name: "id-" + mode.name, Image: realImage(),
				Command: []string{"sh", "-c", "id -u; id -g; echo x > /tmp/x && ! touch /x 2>/dev/null && wc -c"}, CPU: 100, MemoryMB: 48,
			}
			root := nobody
			root.ID, root.Name, root.User = "real/root-"+mode.name, "root-"+mode.name, "root"
			for _, f := range []executor.Function{nobody, root} {
				r.validate(r.ex.FunctionJob(f, false))
				r.validate(r.ex.FunctionJob(f, true))
				if err := r.ex.Register(ctx(t), f); err != nil {
					t.Fatalf("register %s: %v", f.ID, err)
				}
				t.Cleanup(func() { _ = r.ex.Deregister(context.Background(), f) })
			}
			r.validate(r.ex.PullJob(realImage()))

			small := spec("small-"+cluster, nobody, "four")
			if ev := r.run(nobody, small); ev.Kind != executor.Finished || string(ev.Stdout) != "65534\n65534\n4\n" {
				t.Fatalf("nobody, inline stdin: %+v %q", ev, ev.Stdout)
			}
			big := spec("big-"+cluster, nobody, strings.Repeat("x", 20000))
			if ev := r.run(nobody, big); ev.Kind != executor.Finished || string(ev.Stdout) != "65534\n65534\n20000\n" ||
				!strings.Contains(ev.Ref, "-big/dispatch-") {
				t.Fatalf("nobody, stdin as artifact: %+v %q", ev, ev.Stdout)
			}
			if ev := r.run(root, spec("root-"+cluster, root, "")); ev.Kind != executor.Finished || string(ev.Stdout) != "0\n0\n0\n" {
				t.Fatalf("root: %+v %q", ev, ev.Stdout)
			}
			// The container is inspected while it runs: the driver removes
			// it when the task ends.
			hold := nobody
			hold.ID, hold.Name, hold.Command = "real/hold-"+mode.name, "hold-"+mode.name, []string{"sleep", "120"}
			if err := r.ex.Register(ctx(t), hold); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = r.ex.Deregister(context.Background(), hold) })
			hs := spec("hold-"+cluster, hold, "")
			h, err := r.ex.Start(ctx(t), hs)
			if err != nil {
				t.Fatal(err)
			}
			checkContainer(t, hs.CallID, cluster)
			if err := r.ex.Cancel(ctx(t), h); err != nil {
				t.Fatal(err)
			}
			if ev := r.final(hs.CallID); ev.Reason != "canceled" {
				t.Errorf("cancel: %+v", ev)
			}
			if err := r.ex.Pull(ctx(t), realImage()); err != nil {
				t.Fatalf("pull job: %v", err)
			}
		})
	}
}

// checkContainer: the call's container on the client's dockerd carries the
// labels that say whose it is, and the hardening of the local executor.
func checkContainer(t *testing.T, callID, cluster string) {
	t.Helper()
	dc, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatalf("docker client: %v", err)
	}
	defer dc.Close()
	// Wait for it to run: the driver may remove and create it again while
	// it starts (seen on a busy machine).
	var c container.InspectResponse
	waitFor(t, 3*time.Minute, "the running container of "+callID, func() bool {
		list, err := dc.ContainerList(ctx(t), container.ListOptions{
			Filters: filters.NewArgs(filters.Arg("label", executor.LabelCall+"="+callID)),
		})
		if err != nil {
			t.Fatalf("docker: %v", err)
		}
		if len(list) > 1 {
			t.Fatalf("containers of call %s: %d, want 1", callID, len(list))
		}
		if len(list) == 0 {
			return false
		}
		c, err = dc.ContainerInspect(ctx(t), list[0].ID)
		return err == nil
	})
	l := c.Config.Labels
	if l[executor.LabelCluster] != cluster || l[executor.LabelExecutor] != "nomad" || l[executor.LabelManaged] != "true" ||
		!strings.HasPrefix(l[executor.LabelFunction], "real/") {
		t.Errorf("labels: %v", l)
	}
	h := c.HostConfig
	if !slices.Contains(h.CapDrop, "ALL") && !slices.Contains(h.CapDrop, "all") {
		t.Errorf("CapDrop %v", h.CapDrop)
	}
	if !slices.Contains(h.SecurityOpt, "no-new-privileges") {
		t.Errorf("SecurityOpt %v", h.SecurityOpt)
	}
	if h.PidsLimit == nil || *h.PidsLimit != executor.DefaultPidsLimit {
		t.Errorf("PidsLimit %v", h.PidsLimit)
	}
	// The default user is sealed: the shim runs as root with three
	// capabilities and starts the command as nobody (the calls above
	// print nobody's ids).
	if h.Runtime != "runsc" || string(h.NetworkMode) != "none" || c.Config.User != "0:0" ||
		!strings.Contains(strings.Join(c.Config.Entrypoint, " "), " -as "+executor.DefaultUser+" ") {
		t.Errorf("runtime %q network %q user %q entrypoint %v", h.Runtime, h.NetworkMode, c.Config.User, c.Config.Entrypoint)
	}
	var added []string
	for _, c := range h.CapAdd {
		added = append(added, strings.TrimPrefix(strings.ToUpper(c), "CAP_"))
	}
	if slices.Sort(added); !slices.Equal(added, []string{"KILL", "SETGID", "SETUID"}) {
		t.Errorf("CapAdd %v, want KILL, SETGID and SETUID only", h.CapAdd)
	}
	if !h.ReadonlyRootfs || len(c.Mounts) == 0 {
		t.Errorf("read-only root %v, mounts %v", h.ReadonlyRootfs, c.Mounts)
	}
	tmp := false
	for _, m := range h.Mounts {
		if m.Target == "/tmp" && m.Type == "tmpfs" && m.TmpfsOptions != nil && m.TmpfsOptions.SizeBytes == nomadjob.TmpBytes {
			tmp = true
		}
	}
	if !tmp {
		t.Errorf("no %d-byte tmpfs on /tmp: %+v", nomadjob.TmpBytes, h.Mounts)
	}
	if h.Memory != 48<<20 {
		t.Errorf("memory %d, want %d", h.Memory, 48<<20)
	}
}
