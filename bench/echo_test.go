package bench

import (
	"context"
	"io"
	"os"
	"os/exec"
	"slices"
	"testing"
	"time"

	"github.com/docker/docker/client"

	"github.com/hyperfunc/hyperfunc/api"
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
// metrics are per call of each, and the ratio hyperfunc/docker.
func BenchmarkSyncEcho(b *testing.B) {
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
	c := startCluster(b, 1, func() server.Executor {
		shim, err := testimages.Shim()
		if err != nil {
			b.Fatal(err)
		}
		e, err := localexec.New(ctx, localexec.Config{Client: cli, ShimPath: shim, StateDir: b.TempDir()})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = e.Close() })
		return e
	}, nil)
	hc := apiClient(b, c.servers[0].HTTPAddr(), httpClient(1))
	if _, err := hc.Functions().Create(ctx, &api.FunctionSpec{Name: "echo", Image: img, Command: []string{"echo", "hi"}}); err != nil {
		b.Fatal(err)
	}
	viaHyper := func() {
		body, _, err := hc.Calls().CallSync(ctx, "echo", nil, nil)
		if err != nil {
			b.Fatal(err)
		}
		out, err := io.ReadAll(body)
		body.Close()
		if err != nil || string(out) != "hi\n" {
			b.Fatalf("hyperfunc echo: %q %v", out, err)
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
	viaHyper()
	viaDocker()
	var hyper, raw []time.Duration
	timed := func(f func(), into *[]time.Duration) {
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
}

func mean(ds []time.Duration) time.Duration {
	var sum time.Duration
	for _, d := range ds {
		sum += d
	}
	return sum / time.Duration(max(1, len(ds)))
}
