package localexec_test

import (
	"context"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/hyperfunc/hyperfunc/executor"
)

// BenchmarkSyncEcho is one call end to end through the executor: envelope
// written, create, start under runsc with hf-shim, wait, result read from
// the call dir, stderr from the logs, final event. Release runs in the
// background afterwards, as the dispatcher does (docker run --rm removes
// inline, but that is not on a call's critical path here). Compare with
// BenchmarkDockerRunRunsc, the same through the docker CLI, in one run:
//
//	go test -run x -bench . -benchtime 20x ./localexec
func BenchmarkSyncEcho(b *testing.B) {
	e, cli, img := setup(b)
	var wg sync.WaitGroup
	for b.Loop() {
		s := spec(b, cli, img, "echo", "hi")
		if ev := run(b, e, s); ev.Kind != executor.Finished || string(ev.Stdout) != "hi\n" {
			b.Fatalf("%v %q %s", ev.Kind, ev.Stdout, ev.Message)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = e.Release(context.Background(), []executor.Handle{{CallID: s.CallID}})
		}()
	}
	wg.Wait()
}

// BenchmarkDockerRunRunsc is the baseline: `docker run --rm` of the same.
func BenchmarkDockerRunRunsc(b *testing.B) {
	_, _, img := setup(b)
	docker := ""
	for _, p := range []string{"/usr/local/bin/docker", "/usr/bin/docker"} {
		if _, err := os.Stat(p); err == nil {
			docker = p
			break
		}
	}
	if docker == "" {
		b.Skip("no docker CLI")
	}
	for b.Loop() {
		out, err := exec.Command(docker, "run", "--rm", "-i", "--runtime=runsc", "--network=none", img, "echo", "hi").Output()
		if err != nil || string(out) != "hi\n" {
			b.Fatalf("docker run: %q %v", out, err)
		}
	}
}

// BenchmarkEchoVsDockerRun interleaves one executor call and one `docker run
// --rm -i` per iteration (the order flips every iteration), so both see the
// same machine load; it reports the mean of each and their ratio.
//
//	go test -run x -bench EchoVsDockerRun -benchtime 30x ./localexec
func BenchmarkEchoVsDockerRun(b *testing.B) {
	e, cli, img := setup(b)
	docker := ""
	for _, p := range []string{"/usr/local/bin/docker", "/usr/bin/docker"} {
		if _, err := os.Stat(p); err == nil {
			docker = p
			break
		}
	}
	if docker == "" {
		b.Skip("no docker CLI")
	}
	var wg sync.WaitGroup
	viaExec := func() time.Duration {
		t0 := time.Now()
		s := spec(b, cli, img, "echo", "hi")
		if ev := run(b, e, s); ev.Kind != executor.Finished || string(ev.Stdout) != "hi\n" {
			b.Fatalf("%v %q %s", ev.Kind, ev.Stdout, ev.Message)
		}
		d := time.Since(t0)
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = e.Release(context.Background(), []executor.Handle{{CallID: s.CallID}})
		}()
		return d
	}
	viaDocker := func() time.Duration {
		t0 := time.Now()
		out, err := exec.Command(docker, "run", "--rm", "-i", "--runtime=runsc", "--network=none", img, "echo", "hi").Output()
		if err != nil || string(out) != "hi\n" {
			b.Fatalf("docker run: %q %v", out, err)
		}
		return time.Since(t0)
	}
	var ours, theirs time.Duration
	n := 0
	for b.Loop() {
		if n%2 == 0 {
			ours += viaExec()
			theirs += viaDocker()
		} else {
			theirs += viaDocker()
			ours += viaExec()
		}
		n++
	}
	wg.Wait()
	b.ReportMetric(float64(ours.Milliseconds())/float64(n), "hyperfunc-ms/call")
	b.ReportMetric(float64(theirs.Milliseconds())/float64(n), "docker-ms/call")
	b.ReportMetric(float64(ours)/float64(theirs), "ratio")
}
