package nomadjob_test

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/hyperfunc/hyperfunc/executor"
	"github.com/hyperfunc/hyperfunc/nomadjob"
)

// Two hyperfunc clusters share one Nomad: the same owner/name gives each
// its own jobs, and each one's orphan sweep and search by meta leave the
// other's children alone. An executor that knows no cluster touches
// neither.
func TestClustersShareOneNomad(t *testing.T) {
	e := newEnv(t)
	cluster := func(id string) (*nomadjob.Executor, *collector) {
		cfg := e.config()
		cfg.ClusterID = id
		ex, col := e.startExecutor(cfg)
		return ex, col
	}
	exA, colA := cluster("cluster-a")
	exB, colB := cluster("cluster-b")

	fa, fb := fn("same", "cat"), fn("same", "cat")
	if nomadjob.JobID("cluster-a", fa) == nomadjob.JobID("cluster-b", fb) || !strings.HasPrefix(nomadjob.JobID("cluster-a", fa), "hf-"+nomadjob.ClusterTag("cluster-a")+"-") {
		t.Fatalf("job IDs %s and %s", nomadjob.JobID("cluster-a", fa), nomadjob.JobID("cluster-b", fb))
	}
	if err := exA.Register(ctx(t), fa); err != nil {
		t.Fatal(err)
	}
	if _, err := exA.Start(ctx(t), spec("call-a", fa, "from a")); err != nil {
		t.Fatal(err)
	}
	evA := colA.final(t, "call-a")
	if err := exB.Register(ctx(t), fb); err != nil {
		t.Fatal(err)
	}
	if _, err := exB.Start(ctx(t), spec("call-b", fb, "from b")); err != nil {
		t.Fatal(err)
	}
	evB := colB.final(t, "call-b")
	if string(evA.Stdout) != "from a" || string(evB.Stdout) != "from b" {
		t.Fatalf("outputs %q %q", evA.Stdout, evB.Stdout)
	}
	job := e.srv.Job(evA.Ref)
	if job == nil || job.Meta[nomadjob.MetaCluster] != "cluster-a" {
		t.Fatalf("child of a: meta %v", job)
	}

	// A third executor without a cluster: neither child is its own.
	cfgN := e.config()
	exN, err := nomadjob.New(cfgN)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = exN.Close() })
	none := func(string) bool { return false }
	if n, err := exN.CleanOrphans(ctx(t), none); err != nil || n != 0 {
		t.Fatalf("clusterless sweep: %d %v", n, err)
	}
	evs, err := exN.Reconcile(ctx(t), []executor.Handle{{CallID: "call-a"}, {CallID: "call-b"}})
	if err != nil || evs[0].Kind != executor.NotFound || evs[1].Kind != executor.NotFound {
		t.Fatalf("clusterless reconcile by meta: %+v %v", evs, err)
	}

	// B's sweep purges B's dead child only; B finds only its own by meta.
	evs, err = exB.Reconcile(ctx(t), []executor.Handle{{CallID: "call-a"}, {CallID: "call-b"}})
	if err != nil || evs[0].Kind != executor.NotFound || evs[1].Kind != executor.Finished {
		t.Fatalf("reconcile by meta in b: %+v %v", evs, err)
	}
	if n, err := exB.CleanOrphans(ctx(t), none); err != nil || n != 1 {
		t.Fatalf("b's sweep: %d %v", n, err)
	}
	if e.srv.Job(evB.Ref) != nil || e.srv.Job(evA.Ref) == nil {
		t.Fatalf("after b's sweep: a's child %v, b's child %v", e.srv.Job(evA.Ref) != nil, e.srv.Job(evB.Ref) != nil)
	}
	if n, err := exA.CleanOrphans(ctx(t), none); err != nil || n != 1 || e.srv.Job(evA.Ref) != nil {
		t.Fatalf("a's sweep: %d %v", n, err)
	}
	for _, id := range []string{nomadjob.JobID("cluster-a", fa), nomadjob.BigJobID("cluster-a", fa), nomadjob.JobID("cluster-b", fb), nomadjob.BigJobID("cluster-b", fb)} {
		if e.srv.Job(id) == nil {
			t.Fatalf("parameterized job %s gone", id)
		}
	}
}

// The real-Nomad tests fail instead of skipping when CI says so and no
// agent is there (a skip would pass for a green suite).
func TestRealNomadFailsInCIWithoutAgent(t *testing.T) {
	if os.Getenv("HF_REALADDR_CHILD") == "1" {
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run", "^TestRealNomadRunsEveryJob$", "-test.count=1")
	cmd.Env = append(withoutNomad(os.Environ()), "CI=true", "HF_REALADDR_CHILD=1")
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "real-Nomad test cannot run in CI") {
		t.Fatalf("with CI=true and no NOMAD_ADDR: err %v\n%s", err, out)
	}
	cmd = exec.Command(os.Args[0], "-test.run", "^TestRealNomadRunsEveryJob$", "-test.count=1", "-test.v")
	cmd.Env = append(withoutNomad(os.Environ()), "CI=", "HF_REALADDR_CHILD=1")
	out, err = cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "*** SKIPPED") || !strings.Contains(string(out), "--- SKIP") {
		t.Fatalf("without CI and NOMAD_ADDR: err %v\n%s", err, out)
	}
}

func withoutNomad(env []string) []string {
	var out []string
	for _, kv := range env {
		if !strings.HasPrefix(kv, "NOMAD_ADDR=") && !strings.HasPrefix(kv, "CI=") {
			out = append(out, kv)
		}
	}
	return out
}
