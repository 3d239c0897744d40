package chaos

import (
	"context"
	"flag"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/client"

	"github.com/hyperfunc/hyperfunc/executor"
)

// -chaos.nomad=real runs the servers' calls on the real Nomad agent at
// NOMAD_ADDR (`make chaos NOMAD=real` starts a dev agent) instead of the
// double. The faults only the double can show on demand (Nomad down or
// unreachable, dropped event streams) are left out; how often a call ran is
// counted from the engine's container starts, by the call label.
var chaosNomad = flag.String("chaos.nomad", "double", `the executor: "double" (the Nomad double, with its faults) or "real" (the Nomad agent at NOMAD_ADDR)`)

func realNomad() bool { return *chaosNomad == "real" }

// activeFaultKinds are the fault kinds this run injects.
func activeFaultKinds() []string {
	if !realNomad() {
		return faultKinds
	}
	var out []string
	for _, k := range faultKinds {
		switch k {
		case faultNomadDown, faultNomadUnreach, faultDropStreams:
		default:
			out = append(out, k)
		}
	}
	return out
}

// chaosImage is the function's image: anything on the double (it runs the
// command here), the busybox stand-in scripts/setup-docker.sh loads on a
// real engine.
func chaosImage() string {
	if realNomad() {
		return "ubuntu"
	}
	return "busybox"
}

// shimVolumeArgs: the dev agent's host volume holding hf-shim.
func shimVolumeArgs() []string {
	if !realNomad() {
		return nil
	}
	v := os.Getenv("HF_NOMAD_SHIM_VOLUME")
	switch v {
	case "-":
		return nil
	case "":
		v = "hf-shim"
	}
	return []string{"-nomad-shim-volume", v}
}

// startRealNomad stands the real agent in for the double.
func startRealNomad(t testing.TB) *double {
	t.Helper()
	addr := os.Getenv("NOMAD_ADDR")
	if addr == "" {
		t.Fatal("-chaos.nomad=real needs NOMAD_ADDR (make chaos NOMAD=real starts a dev agent)")
	}
	resp, err := http.Get(strings.TrimRight(addr, "/") + "/v1/status/leader")
	if err != nil {
		t.Fatalf("the Nomad agent at %s: %v", addr, err)
	}
	resp.Body.Close()
	dc, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatalf("docker: %v", err)
	}
	sc := &startCounter{n: map[string]int{}}
	ctx, cancel := context.WithCancel(context.Background())
	msgs, errs := dc.Events(ctx, events.ListOptions{Filters: filters.NewArgs(
		filters.Arg("type", string(events.ContainerEventType)),
		filters.Arg("event", string(events.ActionStart)),
		filters.Arg("label", executor.LabelExecutor+"=nomad"),
	)})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case m := <-msgs:
				sc.mu.Lock()
				sc.n[m.Actor.Attributes[executor.LabelCall]]++
				sc.mu.Unlock()
			case err := <-errs:
				sc.mu.Lock()
				if ctx.Err() == nil {
					sc.err = err
				}
				sc.mu.Unlock()
				return
			}
		}
	}()
	t.Cleanup(func() { cancel(); <-done; dc.Close() })
	return &double{nomad: addr, starts: sc, done: make(chan struct{})}
}

// startCounter counts container starts per call ID.
type startCounter struct {
	mu  sync.Mutex
	n   map[string]int
	err error
}

func (s *startCounter) get(id string) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return 0, s.err
	}
	return s.n[id], nil
}

// realNomadRate is the default submission rate on a real Nomad: a dev agent
// on two cores runs about 2.6 calls/s (docs/BENCHMARKS.md), so the double's
// 20/s would leave hundreds of acknowledged calls queued when the checker's
// 3-minute wait for final states ends.
const realNomadRate = 2

// loadRate is -chaos.rate, or realNomadRate on a real Nomad when the flag
// was not given.
func loadRate() float64 {
	if !realNomad() {
		return *rate
	}
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == "chaos.rate" })
	if set {
		return *rate
	}
	return realNomadRate
}
