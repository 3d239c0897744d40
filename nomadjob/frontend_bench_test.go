package nomadjob_test

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	nomad "github.com/hashicorp/nomad/api"

	"github.com/hyperfunc/hyperfunc/api"
	"github.com/hyperfunc/hyperfunc/e2e/harness"
	"github.com/hyperfunc/hyperfunc/executor"
	"github.com/hyperfunc/hyperfunc/nomadjob"
	"github.com/hyperfunc/hyperfunc/nomadjob/nomadtest"
	"github.com/hyperfunc/hyperfunc/server"
)

// These benchmarks put the frontend (HTTP, Raft, dispatcher, executor)
// side by side with raw dispatches of the same parameterized job, in one
// run: against a real Nomad when NOMAD_ADDR is set, else against the
// double (where a task takes milliseconds, so the frontend's own cost is
// what the numbers show).

type benchEnv struct {
	nomadAddr string
	client    *api.Client
	nc        *nomad.Client
	fn        executor.Function
	exec      *nomadjob.Executor
	cfg       nomadjob.Config
	image     string
	jobID     string // the function's parameterized job
}

func buildShim(b *testing.B) []byte {
	out := filepath.Join(b.TempDir(), "hf-shim")
	cmd := exec.Command("go", "build", "-o", out, "github.com/hyperfunc/hyperfunc/cmd/hf-shim")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if msg, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("building the shim: %v\n%s", err, msg)
	}
	bin, err := os.ReadFile(out)
	if err != nil {
		b.Fatal(err)
	}
	return bin
}

// shimModes are the ways the shim reaches the task: the client's host
// volume (real Nomad with one, scripts/nomad-dev.sh declares it) and the
// artifact downloaded per allocation.
func shimModes() []string {
	if os.Getenv("NOMAD_ADDR") != "" && nomadtest.ShimVolume() != "" {
		return []string{"hostvolume", "artifact"}
	}
	return []string{"artifact"}
}

func setupBench(b *testing.B, mode string) *benchEnv {
	b.Helper()
	addr := os.Getenv("NOMAD_ADDR")
	image, volume := realImage(), nomadtest.ShimVolume()
	if mode != "hostvolume" {
		volume = ""
	}
	if addr == "" {
		image, volume = "busybox:1.36", ""
		addr = nomadtest.New(b).URL
		b.Logf("NOMAD_ADDR not set: measuring against the Nomad double")
	}
	archive, sum, err := nomadjob.ShimArchive(buildShim(b))
	if err != nil {
		b.Fatal(err)
	}
	// The executor needs the agent's address before the agent starts: a
	// port below the ephemeral range (harness.FreeAddr), which no :0
	// listener or outgoing connection takes in between.
	httpAddr, err := harness.FreeAddr()
	if err != nil {
		b.Fatal(err)
	}
	cfg := nomadjob.ConfigFromEnv()
	cfg.Address = addr
	cfg.ArtifactBaseURL = "http://" + httpAddr
	cfg.ShimSHA256 = sum
	cfg.ShimVolume = volume
	// Quiet: log lines would interleave with the benchmark result lines.
	ex, err := nomadjob.New(cfg, nomadjob.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ex.Close() })
	srv, err := server.New(server.Config{
		DataDir: b.TempDir(), HTTPAddr: httpAddr, RaftAddr: "127.0.0.1:0", ClusterKey: "frontend-bench-cluster-key",
		ShimArchive: archive, Executor: ex, DefaultQuota: 64,
		Logger: hclog.New(&hclog.LoggerOptions{Level: hclog.Error, Output: io.Discard}),
	})
	if err != nil {
		b.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { srv.Shutdown(false) })
	client, _ := api.NewClient(&api.Config{Address: httpAddr})
	deadline := time.Now().Add(time.Minute) // only a hang
	for !srv.IsLeader() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if !srv.IsLeader() {
		b.Fatal("the agent did not become leader")
	}
	name := fmt.Sprintf("bench%d", time.Now().UnixNano()%100000)
	f, err := client.Functions().Create(context.Background(), &api.FunctionSpec{Name: name, Image: image, Command: []string{"echo", "hi"}, Size: "s1"})
	if err != nil {
		b.Fatal(err)
	}
	nc, err := nomad.NewClient(cfg.APIConfig())
	if err != nil {
		b.Fatal(err)
	}
	e := &benchEnv{nomadAddr: addr, client: client, nc: nc, exec: ex, cfg: cfg, image: image,
		fn: executor.Function{ID: server.DefaultUser + "/" + f.Name, Owner: server.DefaultUser, Name: f.Name}}
	// The raw calls dispatch the very job the frontend registered (found by
	// its meta: the server may tag job IDs with its cluster).
	stubs, _, err := nc.Jobs().PrefixList("hf-")
	if err != nil {
		b.Fatal(err)
	}
	for _, s := range stubs {
		if s.ParentID != "" || strings.HasSuffix(s.ID, nomadjob.BigSuffix) || strings.HasSuffix(s.ID, nomadjob.WarmSuffix) {
			continue
		}
		if j, _, err := nc.Jobs().Info(s.ID, nil); err == nil && j.Meta[nomadjob.MetaFunction] == e.fn.ID {
			e.jobID = s.ID
		}
	}
	if e.jobID == "" {
		b.Fatalf("no Nomad job of %s", e.fn.ID)
	}
	b.Cleanup(func() { _ = client.Functions().Delete(context.Background(), f.Name) })
	return e
}

// rawCall dispatches the function's job directly and reads stdout from the
// allocation as the executor does, without the frontend. Errors are
// returned: it runs on worker goroutines.
func (e *benchEnv) rawCall(i int) error {
	id := fmt.Sprintf("raw-%d-%d", time.Now().UnixNano(), i)
	env := nomadjob.BuildEnvelope(executor.Spec{CallID: id, Stdin: nil}, 1<<20, true)
	env.Argv = []string{"echo", "hi"}
	payload, err := jsonMarshal(env)
	if err != nil {
		return err
	}
	resp, _, err := e.nc.Jobs().Dispatch(e.jobID, map[string]string{"call_id": id}, payload, id, nil)
	if err != nil {
		return err
	}
	defer e.nc.Jobs().Deregister(resp.DispatchedJobID, true, nil)
	var index uint64
	for {
		allocs, meta, err := e.nc.Jobs().Allocations(resp.DispatchedJobID, false, &nomad.QueryOptions{WaitIndex: index, WaitTime: 10 * time.Second})
		if err != nil {
			return err
		}
		index = meta.LastIndex
		if len(allocs) > 0 && (allocs[0].ClientStatus == "complete" || allocs[0].ClientStatus == "failed") {
			alloc, _, err := e.nc.Allocations().Info(allocs[0].ID, nil)
			if err != nil {
				return err
			}
			rc, err := e.nc.AllocFS().Cat(alloc, nomadjob.StdoutFilePath, nil)
			if err != nil {
				return err
			}
			out, _ := io.ReadAll(rc)
			rc.Close()
			if strings.TrimSpace(string(out)) != "hi" {
				return fmt.Errorf("raw call answered %q (alloc %s)", out, allocs[0].ClientStatus)
			}
			return nil
		}
	}
}

func (e *benchEnv) frontendCall() error {
	body, _, err := e.client.Calls().CallSync(context.Background(), e.fn.Name, nil, nil)
	if err != nil {
		return err
	}
	out, _ := io.ReadAll(body)
	body.Close()
	if strings.TrimSpace(string(out)) != "hi" {
		return fmt.Errorf("frontend call answered %q", out)
	}
	return nil
}

// BenchmarkNomadLatency alternates raw and frontend calls so both see the
// same Nomad at the same moment, and reports both and their ratio.
func BenchmarkNomadLatency(b *testing.B) {
	for _, mode := range shimModes() {
		b.Run(mode, func(b *testing.B) {
			e := setupBench(b, mode)
			var raw, front []time.Duration
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				t0 := time.Now()
				if err := e.rawCall(i); err != nil {
					b.Fatal(err)
				}
				raw = append(raw, time.Since(t0))
				t0 = time.Now()
				if err := e.frontendCall(); err != nil {
					b.Fatal(err)
				}
				front = append(front, time.Since(t0))
			}
			r, f := median(raw), median(front)
			b.ReportMetric(float64(r.Microseconds())/1000, "raw-p50-ms")
			b.ReportMetric(float64(f.Microseconds())/1000, "frontend-p50-ms")
			b.ReportMetric(float64(f)/float64(r), "ratio")
		})
	}
}

// BenchmarkNomadThroughput runs b.N calls at concurrency 10 raw, then
// through the frontend, and reports calls per second of each.
func BenchmarkNomadThroughput(b *testing.B) {
	for _, mode := range shimModes() {
		b.Run(mode, func(b *testing.B) { benchThroughput(b, mode) })
	}
}

func benchThroughput(b *testing.B, mode string) {
	e := setupBench(b, mode)
	const conc = 10
	run := func(call func(i int) error) float64 {
		var (
			wg    sync.WaitGroup
			mu    sync.Mutex
			first error
		)
		next := make(chan int)
		t0 := time.Now()
		for w := 0; w < conc; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range next {
					if err := call(i); err != nil {
						mu.Lock()
						first = cmp.Or(first, err)
						mu.Unlock()
					}
				}
			}()
		}
		for i := 0; i < b.N; i++ {
			next <- i
		}
		close(next)
		wg.Wait()
		if first != nil {
			b.Fatal(first)
		}
		return float64(b.N) / time.Since(t0).Seconds()
	}
	b.ResetTimer()
	rawRate := run(e.rawCall)
	frontRate := run(func(int) error { return e.frontendCall() })
	b.ReportMetric(rawRate, "raw-calls/s")
	b.ReportMetric(frontRate, "frontend-calls/s")
	b.ReportMetric(frontRate/rawRate, "ratio")
}

func median(ds []time.Duration) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}
