package harness

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/client"

	"github.com/hyperfunc/hyperfunc/executor"
)

// Docker returns a client of the local engine. Without a reachable engine
// the test is skipped, or fails when the CI variable is set (CI must never
// skip the end-to-end tests silently).
func Docker(t testing.TB) *client.Client {
	t.Helper()
	dc, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err == nil {
		// Long: no engine fails at once (no socket); only a slow one,
		// busy with another process's containers, takes a while, and in
		// CI a timeout here fails the test as "no Docker engine".
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		_, err = dc.Ping(ctx)
		cancel()
		if err == nil {
			// Every call runs under gVisor (DESIGN.md §8): an engine
			// without runsc would let the tests pass on runc, so it fails.
			info, ierr := dc.Info(context.Background())
			if ierr != nil {
				dc.Close()
				t.Fatalf("docker info: %v", ierr)
			}
			if _, ok := info.Runtimes["runsc"]; !ok {
				dc.Close()
				t.Fatalf("the engine has no runsc runtime (has %v): run scripts/setup-docker.sh as root", keys(info.Runtimes))
			}
			t.Cleanup(func() { dc.Close() })
			return dc
		}
		dc.Close()
	}
	msg := fmt.Sprintf("no Docker engine (%v): run scripts/setup-docker.sh as root", err)
	if os.Getenv("CI") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return nil
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// ContainerEvent is one engine event of a hyperfunc container.
type ContainerEvent struct {
	Action   string
	ID       string
	CallID   string
	Function string // owner/name
	Time     time.Time
	Attrs    map[string]string
}

// Watcher records the engine's events of hyperfunc containers.
type Watcher struct {
	mu     sync.Mutex
	events []ContainerEvent
	err    error
	cancel context.CancelFunc
	done   chan struct{}
}

// WatchContainers subscribes to container events of hyperfunc-managed
// containers (label io.hyperfunc.managed=true) from now on, before it
// returns, and records them until the test ends.
func WatchContainers(t testing.TB, dc *client.Client) *Watcher {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	since := time.Now().Add(-time.Second)
	msgs, errs := dc.Events(ctx, events.ListOptions{
		Since: strconv.FormatInt(since.Unix(), 10),
		Filters: filters.NewArgs(
			filters.Arg("type", string(events.ContainerEventType)),
			filters.Arg("label", executor.LabelManaged+"=true"),
		),
	})
	w := &Watcher{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for {
			select {
			case m := <-msgs:
				ev := ContainerEvent{
					Action: string(m.Action), ID: m.Actor.ID, Attrs: m.Actor.Attributes,
					CallID: m.Actor.Attributes[executor.LabelCall], Function: m.Actor.Attributes[executor.LabelFunction],
					Time: time.Unix(0, m.TimeNano),
				}
				w.mu.Lock()
				w.events = append(w.events, ev)
				w.mu.Unlock()
			case err := <-errs:
				w.mu.Lock()
				if ctx.Err() == nil {
					w.err = err
				}
				w.mu.Unlock()
				return
			}
		}
	}()
	t.Cleanup(w.Stop)
	return w
}

// Stop ends the subscription.
func (w *Watcher) Stop() {
	w.cancel()
	<-w.done
}

// Err is the error that ended the subscription early, if any.
func (w *Watcher) Err() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// Events returns the recorded events of containers whose function label
// ends with "/"+function (all when function is empty), oldest first.
func (w *Watcher) Events(function string) []ContainerEvent {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []ContainerEvent
	for _, e := range w.events {
		if function == "" || strings.HasSuffix(e.Function, "/"+function) {
			out = append(out, e)
		}
	}
	return out
}

// Creates counts container creations per call ID of function.
func (w *Watcher) Creates(function string) map[string]int {
	return w.count(function, events.ActionCreate)
}

// Starts counts container starts per call ID of function: a call whose
// container started twice ran twice.
func (w *Watcher) Starts(function string) map[string]int {
	return w.count(function, events.ActionStart)
}

func (w *Watcher) count(function string, action events.Action) map[string]int {
	out := map[string]int{}
	for _, e := range w.Events(function) {
		if e.Action == string(action) {
			out[e.CallID]++
		}
	}
	return out
}

// MaxConcurrent is the most containers of function that ran at once, by
// the engine's start and die events.
func (w *Watcher) MaxConcurrent(function string) int {
	running, most := map[string]bool{}, 0
	for _, e := range w.Events(function) {
		switch events.Action(e.Action) {
		case events.ActionStart:
			running[e.ID] = true
		case events.ActionDie:
			delete(running, e.ID)
		}
		most = max(most, len(running))
	}
	return most
}

// CallContainers lists the containers (any state) labelled with call id.
func CallContainers(ctx context.Context, dc *client.Client, callID string) ([]container.Summary, error) {
	return dc.ContainerList(ctx, container.ListOptions{
		All:     true,
		Filters: filters.NewArgs(filters.Arg("label", executor.LabelCall+"="+callID)),
	})
}

// sweepContainers removes what this run's functions left on the engine
// (agents killed with SIGKILL leave their running containers behind).
func sweepContainers() {
	dc, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		return
	}
	defer dc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cs, err := dc.ContainerList(ctx, container.ListOptions{
		All:     true,
		Filters: filters.NewArgs(filters.Arg("label", executor.LabelManaged+"=true")),
	})
	if err != nil {
		return
	}
	for _, c := range cs {
		if strings.Contains(c.Labels[executor.LabelFunction], "-"+runID+"-") {
			_ = dc.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true})
		}
	}
}
