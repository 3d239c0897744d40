// Package nomad runs the seed walkthrough and the failure cases against a
// real Nomad cluster, through the Nomad executor. It runs only when
// NOMAD_ADDR is set (with NOMAD_TOKEN etc. as the nomad CLI reads them):
//
//	NOMAD_ADDR=http://127.0.0.1:4646 go test ./e2e/nomad/ -v
//
// The Nomad clients fetch the shim and big stdin from this test process:
// HF_E2E_LISTEN is the address it listens on (default 127.0.0.1:0, enough
// for `nomad agent -dev` on the same machine) and HF_E2E_ARTIFACT_URL the
// URL the clients reach it at (default http://<listen address>).
// HF_E2E_IMAGE (default busybox:1.36) must have sh, cat, sleep, head;
// HF_E2E_RUNTIME (default runsc) is the docker runtime.
package nomad

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hyperfunc/hyperfunc/api"
	"github.com/hyperfunc/hyperfunc/executor"
	"github.com/hyperfunc/hyperfunc/nomadjob"
)

type suite struct {
	t     *testing.T
	ex    *nomadjob.Executor
	mu    sync.Mutex
	stdin map[string][]byte
	evs   map[string][]executor.Event
	image string
}

func setup(t *testing.T) *suite {
	t.Helper()
	if os.Getenv("NOMAD_ADDR") == "" {
		t.Skip("NOMAD_ADDR not set: skipping real-Nomad suite")
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "hf-shim")
	build := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", bin, "./cmd/hf-shim")
	build.Dir = root
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build hf-shim: %v\n%s", err, out)
	}
	shimBin, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	archive, sum, err := nomadjob.ShimArchive(shimBin)
	if err != nil {
		t.Fatal(err)
	}
	s := &suite{t: t, stdin: map[string][]byte{}, evs: map[string][]executor.Event{}, image: envOr("HF_E2E_IMAGE", "busybox:1.36")}
	ln, err := net.Listen("tcp", envOr("HF_E2E_LISTEN", "127.0.0.1:0"))
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+nomadjob.DefaultShimArtifactPath, func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write(archive) })
	mux.HandleFunc("GET /v1/artifacts/stdin/{call}", func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		b, ok := s.stdin[r.PathValue("call")+"\x00"+r.URL.Query().Get("key")]
		s.mu.Unlock()
		if !ok {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write(b)
	})
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = hs.Serve(ln) }()
	t.Cleanup(func() { _ = hs.Close() })

	cfg := nomadjob.ConfigFromEnv()
	cfg.ArtifactBaseURL = envOr("HF_E2E_ARTIFACT_URL", "http://"+ln.Addr().String())
	cfg.ShimSHA256 = sum
	cfg.Runtime = envOr("HF_E2E_RUNTIME", "runsc")
	s.ex, err = nomadjob.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.ex.Close() })
	if err := s.ex.Health(ctx(t, 10*time.Second)); err != nil {
		t.Fatalf("nomad health: %v", err)
	}
	go func() {
		for ev := range s.ex.Events() {
			s.mu.Lock()
			s.evs[ev.CallID] = append(s.evs[ev.CallID], ev)
			s.mu.Unlock()
		}
	}()
	return s
}

func envOr(k, d string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return d
}

func ctx(t *testing.T, d time.Duration) context.Context {
	c, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return c
}

func (s *suite) fn(name string, command ...string) executor.Function {
	f := executor.Function{ID: "e2e/" + name, Owner: "e2e", Name: name, Image: s.image, Command: command, CPU: 100, MemoryMB: 64}
	if err := s.ex.Register(ctx(s.t, 30*time.Second), f); err != nil {
		s.t.Fatalf("register %s: %v", name, err)
	}
	s.t.Cleanup(func() { _ = s.ex.Deregister(context.Background(), f) })
	return f
}

// call runs one call and waits for its end (real Nomad: up to 2 minutes,
// image pulls included).
func (s *suite) call(f executor.Function, stdin []byte, limit int64) executor.Event {
	s.t.Helper()
	id := "e2e-" + f.Name + "-" + time.Now().Format("150405.000000")
	key := "k" + id
	s.mu.Lock()
	s.stdin[id+"\x00"+key] = stdin
	s.mu.Unlock()
	h, err := s.ex.Start(ctx(s.t, 30*time.Second), executor.Spec{
		CallID: id, Function: f, Stdin: stdin, StdoutLimit: limit, Key: key,
		Env: map[string]string{"HYPER_CALL_ID": id, "HYPER_FUNC_NAME": f.Name},
	})
	if err != nil {
		s.t.Fatalf("start %s: %v", id, err)
	}
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		s.mu.Lock()
		for _, ev := range s.evs[id] {
			if ev.Kind == executor.Finished || ev.Kind == executor.Failed {
				s.mu.Unlock()
				return ev
			}
		}
		s.mu.Unlock()
		time.Sleep(50 * time.Millisecond)
	}
	s.t.Fatalf("call %s (%s) did not end in 2 minutes", id, h.Ref)
	return executor.Event{}
}

// TestSeedWalkthrough: hyper pull, func create, call, call with payload.
func TestSeedWalkthrough(t *testing.T) {
	s := setup(t)
	if err := s.ex.Pull(ctx(t, 5*time.Minute), s.image); err != nil {
		t.Fatalf("pull: %v", err)
	}
	hello := s.fn("helloworld", "echo", "HelloWorld")
	if ev := s.call(hello, nil, 1<<20); ev.Kind != executor.Finished || string(ev.Stdout) != "HelloWorld\n" {
		t.Fatalf("helloworld: %+v %q", ev, ev.Stdout)
	}
	if ev := s.call(hello, []byte("Hello\n"), 1<<20); ev.Kind != executor.Finished || string(ev.Stdout) != "HelloWorld\n" {
		t.Fatalf("helloworld with payload: %+v", ev)
	}
	cat := s.fn("cat", "cat")
	if ev := s.call(cat, []byte("through stdin\n"), 1<<20); string(ev.Stdout) != "through stdin\n" {
		t.Fatalf("cat: %+v %q", ev, ev.Stdout)
	}
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<16)
	sha := s.fn("sha", "sha256sum")
	sum := sha256.Sum256(big)
	if ev := s.call(sha, big, 1<<20); !strings.HasPrefix(string(ev.Stdout), hex.EncodeToString(sum[:])) {
		t.Fatalf("1 MiB stdin: %+v %q", ev, ev.Stdout)
	}
}

func TestFailureCases(t *testing.T) {
	s := setup(t)
	exit3 := s.fn("exit3", "sh", "-c", "echo partial; exit 3")
	if ev := s.call(exit3, nil, 1<<20); ev.Reason != api.ReasonExit || ev.ExitCode != 3 {
		t.Errorf("exit 3: %+v", ev)
	}
	noimg := executor.Function{ID: "e2e/noimage", Owner: "e2e", Name: "noimage", Image: "hf/does-not-exist:1", Command: []string{"true"}}
	if err := s.ex.Register(ctx(t, 30*time.Second), noimg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.ex.Deregister(context.Background(), noimg) })
	if ev := s.call(noimg, nil, 1<<20); ev.Reason != api.ReasonImage {
		t.Errorf("missing image: %+v", ev)
	}
	loud := s.fn("loud", "head", "-c", "5000", "/dev/zero")
	if ev := s.call(loud, nil, 1024); ev.Reason != api.ReasonOutput || len(ev.Stdout) != 1024 {
		t.Errorf("output: %+v", ev)
	}
	slow := s.fn("slow", "sleep", "30")
	slow.Timeout = time.Second
	if err := s.ex.Register(ctx(t, 30*time.Second), slow); err != nil {
		t.Fatal(err)
	}
	if ev := s.call(slow, nil, 1<<20); ev.Reason != api.ReasonTimeout {
		t.Errorf("timeout: %+v", ev)
	}
}
