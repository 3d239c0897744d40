package localexec_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/client"
	"github.com/hyperfunc/hyperfunc/executor"
	"github.com/hyperfunc/hyperfunc/internal/mounts"
	"github.com/hyperfunc/hyperfunc/internal/testimages"
	"github.com/hyperfunc/hyperfunc/localexec"
	"github.com/hyperfunc/hyperfunc/server"
)

var _ server.Executor = (*localexec.Executor)(nil)

// stateDir is the StateDir of every executor of this test binary: a
// "restarted" executor finds the call dirs of the one before.
var stateDir string

// testLogger logs at debug level when HF_TEST_DEBUG is set.
var testLogger = func() *slog.Logger {
	l := slog.LevelInfo
	if os.Getenv("HF_TEST_DEBUG") != "" {
		l = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: l}))
}()

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "localexec-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	stateDir = dir
	code := m.Run()
	mounts.UnmountUnder(dir)
	os.RemoveAll(dir)
	testimages.RemoveShim()
	os.Exit(code)
}

func shimPath(tb testing.TB) string {
	tb.Helper()
	p, err := testimages.Shim()
	if err != nil {
		tb.Fatalf("hf-shim: %v", err)
	}
	return p
}

// dockerClient connects to the engine. Without one, the test skips, except
// in CI (env CI set) where a missing engine is a failure, not a pass.
func dockerClient(tb testing.TB) *client.Client {
	tb.Helper()
	absent := func(why string) {
		if os.Getenv("CI") != "" {
			tb.Fatalf("CI is set but docker is unavailable: %s", why)
		}
		tb.Skipf("docker unavailable, skipping: %s", why)
	}
	if os.Getenv("DOCKER_HOST") == "" {
		if _, err := os.Stat("/var/run/docker.sock"); err != nil {
			absent(err.Error())
		}
	}
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		absent(err.Error())
	}
	// Long: a missing engine fails at once; only a busy one is slow, and
	// in CI a timeout here is a failure.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := cli.Ping(ctx); err != nil {
		absent(err.Error())
	}
	tb.Cleanup(func() { _ = cli.Close() })
	return cli
}

// setup returns a fresh executor on the engine and the busybox test image.
func setup(tb testing.TB) (*localexec.Executor, *client.Client, string) {
	tb.Helper()
	cli := dockerClient(tb)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	img, err := testimages.EnsureBusybox(ctx, cli)
	if err != nil {
		tb.Fatalf("test image: %v", err)
	}
	return newExec(tb, cli), cli, img
}

func newExec(tb testing.TB, cli *client.Client) *localexec.Executor {
	return newClusterExec(tb, cli, "", stateDir)
}

// newClusterExec is newExec for another cluster sharing the engine, with
// its own state dir (another agent's data dir).
func newClusterExec(tb testing.TB, cli *client.Client, cluster, dir string) *localexec.Executor {
	tb.Helper()
	e, err := localexec.New(context.Background(), localexec.Config{
		Client: cli, StateDir: dir, ShimPath: shimPath(tb), EngineGrace: 3 * time.Second,
		ClusterID: cluster, Logger: testLogger,
	})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = e.Close() })
	return e
}

func newCallID(tb testing.TB) string {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		tb.Fatal(err)
	}
	return "t" + hex.EncodeToString(b)
}

// spec of a call of img running cmd. Its container is force-removed when the
// test ends, so a failing test leaves nothing behind.
func spec(tb testing.TB, cli *client.Client, img string, cmd ...string) executor.Spec {
	tb.Helper()
	id := newCallID(tb)
	tb.Cleanup(func() {
		_ = cli.ContainerRemove(context.Background(), "hf-"+id, container.RemoveOptions{Force: true})
		mounts.UnmountUnder(filepath.Join(stateDir, id))
		_ = os.RemoveAll(filepath.Join(stateDir, id))
	})
	return executor.Spec{
		CallID: id,
		Function: executor.Function{
			ID: "tester/fn", Owner: "tester", Name: "fn", Image: img, Command: cmd,
			CPU: 1000, MemoryMB: 128,
		},
		Env:         map[string]string{"HYPER_CALL_ID": id, "HYPER_FUNC_NAME": "fn"},
		StdoutLimit: 1 << 20,
	}
}

func start(tb testing.TB, e *localexec.Executor, s executor.Spec) executor.Handle {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	h, err := e.Start(ctx, s)
	if err != nil {
		tb.Fatalf("start: %v", err)
	}
	return h
}

// next waits for the next event of call id of the given kinds; events of
// other calls on the same executor are skipped.
func next(tb testing.TB, e *localexec.Executor, id string, within time.Duration, kinds ...executor.Kind) executor.Event {
	tb.Helper()
	deadline := time.After(within)
	for {
		select {
		case ev := <-e.Events():
			if ev.CallID != id {
				continue
			}
			for _, k := range kinds {
				if ev.Kind == k {
					return ev
				}
			}
		case <-deadline:
			tb.Fatalf("no %v event for %s within %s", kinds, id, within)
		}
	}
}

func final(tb testing.TB, e *localexec.Executor, id string) executor.Event {
	tb.Helper()
	return next(tb, e, id, 2*time.Minute, executor.Finished, executor.Failed) // only a hang: gVisor on a busy engine is slow
}

// run starts a call and returns its final event.
func run(tb testing.TB, e *localexec.Executor, s executor.Spec) executor.Event {
	tb.Helper()
	start(tb, e, s)
	return final(tb, e, s.CallID)
}

// containers lists the containers (any state) of a call by its label.
func containers(tb testing.TB, cli *client.Client, id string) []container.Summary {
	tb.Helper()
	list, err := cli.ContainerList(context.Background(), container.ListOptions{
		All: true, Filters: filters.NewArgs(filters.Arg("label", executor.LabelCall+"="+id)),
	})
	if err != nil {
		tb.Fatalf("list containers: %v", err)
	}
	return list
}

// eventually polls cond until it holds or the deadline passes.
func eventually(tb testing.TB, within time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("not within %s: %s", within, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// removed waits until the calls have neither a container nor a call dir.
func removed(tb testing.TB, cli *client.Client, ids ...string) {
	tb.Helper()
	for _, id := range ids {
		eventually(tb, 2*time.Minute, "container and dir of "+id+" removed", func() bool {
			_, err := os.Stat(filepath.Join(stateDir, id))
			return len(containers(tb, cli, id)) == 0 && os.IsNotExist(err)
		})
	}
}

// release tells e that the calls' outcomes are recorded, and checks that
// their containers and dirs go.
func release(tb testing.TB, e *localexec.Executor, cli *client.Client, hs ...executor.Handle) {
	tb.Helper()
	if err := e.Release(context.Background(), hs); err != nil {
		tb.Fatalf("release: %v", err)
	}
	for _, h := range hs {
		removed(tb, cli, h.CallID)
	}
}

// kept checks that a call's container and dir are still there.
func kept(tb testing.TB, cli *client.Client, id string) {
	tb.Helper()
	if n := len(containers(tb, cli, id)); n != 1 {
		tb.Fatalf("%d containers of %s before Release, want 1", n, id)
	}
	if _, err := os.Stat(filepath.Join(stateDir, id, "out", "result.json")); err != nil {
		tb.Fatalf("result of %s before Release: %v", id, err)
	}
}

func wantFailed(tb testing.TB, ev executor.Event, reason, msgPart string) {
	tb.Helper()
	if ev.Kind != executor.Failed || ev.Reason != reason || !strings.Contains(ev.Message, msgPart) {
		tb.Fatalf("got %v reason=%q message=%q exit=%d stderr=%q; want failed %q with %q",
			ev.Kind, ev.Reason, ev.Message, ev.ExitCode, ev.Stderr, reason, msgPart)
	}
}
