package bench

import (
	"context"
	"io"
	"os"
	"os/exec"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/client"

	"github.com/hyperfunc/hyperfunc/api"
	"github.com/hyperfunc/hyperfunc/internal/mounts"
	"github.com/hyperfunc/hyperfunc/internal/testimages"
	"github.com/hyperfunc/hyperfunc/localexec"
	"github.com/hyperfunc/hyperfunc/server"
)

// echoImage is the walkthrough's image; scripts/setup-docker.sh puts it
// in the loopback mirror (a busybox stand-in). HF_BENCH_IMAGE overrides it.
func echoImage() string {
	if img := os.Getenv("HF_BENCH_IMAGE"); img != "" {
		return img
	}
	return "ubuntu"
}

func dockerCLI(tb testing.TB) string {
	for _, p := range []string{"/usr/local/bin/docker", "/usr/bin/docker"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	tb.Skip("no docker CLI")
	return ""
}

// BenchmarkSyncEcho is a sync `echo hi` call through hyperfunc (a
// one-node agent in this process with the local Docker executor: HTTP,
// Raft enqueue, dispatcher, container under runsc, result) against
// `docker run --rm -i --runtime=runsc --network=none <image> echo hi`,
// interleaved one after the other in each iteration (the order flips every
// iteration), so both see the same machine. One op is one of each; the
// metrics are per call of each, and the ratio hyperfunc/docker. The
// hyperfunc call is cold: a new container per call.
func BenchmarkSyncEcho(b *testing.B) { syncEcho(b, 0) }

// BenchmarkSyncEchoWarm is BenchmarkSyncEcho with the function's --warm 2:
// each call takes a pre-started sandbox (and is still its only call).
// Before each timed call of either side the pool is back to 2 (untimed),
// so the refill's boot runs inside neither side's time; the two idle
// sandboxes (their shims polling) are there throughout, a cost of warm
// pools that both sides pay.
func BenchmarkSyncEchoWarm(b *testing.B) { syncEcho(b, 2) }

func syncEcho(b *testing.B, warm int) {
	docker := dockerCLI(b)
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		b.Skipf("docker client: %v", err)
	}
	ctx := context.Background()
	if _, err := cli.Ping(ctx); err != nil {
		b.Skipf("docker engine unavailable: %v", err)
	}
	defer cli.Close()
	img := echoImage()
	if _, err := cli.ImageInspect(ctx, img); err != nil {
		b.Skipf("image %s missing (run scripts/setup-docker.sh): %v", img, err)
	}
	var (
		le      *localexec.Executor
		startMu sync.Mutex
		starts  []time.Duration // the executor's Start, per call
	)
	c := startCluster(b, 1, func() server.Executor {
		shim, err := testimages.Shim()
		if err != nil {
			b.Fatal(err)
		}
		dir := b.TempDir()
		// Before TempDir's RemoveAll: the calls' and sandboxes' out/ tmpfs.
		b.Cleanup(func() { mounts.UnmountUnder(dir) })
		e, err := localexec.New(ctx, localexec.Config{Client: cli, ShimPath: shim, StateDir: dir, ClusterID: "bench-echo"})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = e.Close() })
		le = e
		return e
	}, nil)
	// After the server's own observer (metrics) is set: this one replaces it.
	le.ObserveStarts(func(_ bool, d time.Duration) {
		startMu.Lock()
		starts = append(starts, d)
		startMu.Unlock()
	})
	hc := apiClient(b, c.servers[0].HTTPAddr(), httpClient(1))
	fn, err := hc.Functions().Create(ctx, &api.FunctionSpec{Name: "echo", Image: img, Command: []string{"echo", "hi"}, Warm: warm})
	if err != nil {
		b.Fatal(err)
	}
	fnID := fn.Owner + "/echo"
	ready := func() {
		if warm == 0 {
			return
		}
		deadline := time.Now().Add(2 * time.Minute)
		for le.Warm().Ready[fnID] < warm {
			if time.Now().After(deadline) {
				b.Fatalf("warm pool of %s not ready: %+v", fnID, le.Warm())
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	var phases [4][]time.Duration // enqueue, start, run, finish: see below
	viaHyper := func() {
		t0 := time.Now()
		body, id, err := hc.Calls().CallSync(ctx, "echo", nil, nil)
		if err != nil {
			b.Fatal(err)
		}
		out, err := io.ReadAll(body)
		body.Close()
		t1 := time.Now()
		if err != nil || string(out) != "hi\n" {
			b.Fatalf("hyperfunc echo: %q %v", out, err)
		}
		// Where the time went, by the call's record (one clock: one host).
		if rec, _, err := hc.Calls().Info(ctx, id, nil); err == nil && !rec.StartedAt.IsZero() && !rec.FinishedAt.IsZero() {
			phases[0] = append(phases[0], rec.CreatedAt.Sub(t0))
			phases[1] = append(phases[1], rec.StartedAt.Sub(rec.CreatedAt))
			phases[2] = append(phases[2], rec.FinishedAt.Sub(rec.StartedAt))
			phases[3] = append(phases[3], t1.Sub(rec.FinishedAt))
		}
	}
	viaDocker := func() {
		out, err := exec.Command(docker, "run", "--rm", "-i", "--runtime=runsc", "--network=none", img, "echo", "hi").Output()
		if err != nil || string(out) != "hi\n" {
			b.Fatalf("docker run: %q %v", out, err)
		}
	}
	// One warm-up of each: the first container of an image pays for
	// layer setup, the first call for the dispatcher's first pass.
	ready()
	viaHyper()
	viaDocker()
	for i := range phases {
		phases[i] = phases[i][:0]
	}
	startMu.Lock()
	starts = starts[:0]
	startMu.Unlock()
	hits0 := le.Warm().Hits
	var hyper, raw []time.Duration
	timed := func(f func(), into *[]time.Duration) {
		b.StopTimer()
		ready()
		b.StartTimer()
		t := time.Now()
		f()
		*into = append(*into, time.Since(t))
	}
	b.ResetTimer()
	i := 0
	for b.Loop() {
		if i%2 == 0 {
			timed(viaHyper, &hyper)
			timed(viaDocker, &raw)
		} else {
			timed(viaDocker, &raw)
			timed(viaHyper, &hyper)
		}
		i++
	}
	b.StopTimer()
	slices.Sort(hyper)
	slices.Sort(raw)
	mh, md := mean(hyper), mean(raw)
	b.ReportMetric(ms(mh), "hyperfunc-ms")
	b.ReportMetric(ms(md), "docker-ms")
	b.ReportMetric(ms(percentile(hyper, 50)), "hyperfunc-p50-ms")
	b.ReportMetric(ms(percentile(raw, 50)), "docker-p50-ms")
	b.ReportMetric(float64(mh)/float64(md), "ratio")
	b.ReportMetric(float64(percentile(hyper, 50))/float64(percentile(raw, 50)), "p50-ratio")
	// The breakdown, p50 of each phase: client to enqueued (HTTP, Raft
	// apply); enqueued to started (dispatcher pass, Raft CallStart, the
	// executor's Start: create and start a container, or hand a warm one
	// its envelope); started to the command's end (by the shim); the end
	// to the client's answer (exit, collect, Raft CallFinish, the answer).
	for i, name := range []string{"enqueue", "start", "run", "finish"} {
		slices.Sort(phases[i])
		if len(phases[i]) > 0 {
			b.ReportMetric(ms(percentile(phases[i], 50)), name+"-p50-ms")
		}
	}
	startMu.Lock()
	slices.Sort(starts)
	if len(starts) > 0 {
		b.ReportMetric(ms(percentile(starts, 50)), "exec-start-p50-ms")
	}
	startMu.Unlock()
	if warm > 0 {
		b.ReportMetric(float64(le.Warm().Hits-hits0), "warm-hits")
	}
}

func mean(ds []time.Duration) time.Duration {
	var sum time.Duration
	for _, d := range ds {
		sum += d
	}
	return sum / time.Duration(max(1, len(ds)))
}
