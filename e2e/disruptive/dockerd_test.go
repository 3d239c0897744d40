// Package disruptive holds end-to-end tests that disturb the shared Docker
// engine (they restart dockerd), so they must run alone, after the other
// packages:
//
//	HYPERFUNC_DISRUPTIVE=1 go test -race -count=1 -p 1 ./e2e/disruptive/
//
// Without HYPERFUNC_DISRUPTIVE=1 they skip.
package disruptive

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/docker/docker/client"

	"github.com/hyperfunc/hyperfunc/api"
	"github.com/hyperfunc/hyperfunc/e2e/harness"
)

func TestMain(m *testing.M) { os.Exit(harness.Main(m)) }

func requireDisruptive(t *testing.T) {
	t.Helper()
	if os.Getenv("HYPERFUNC_DISRUPTIVE") != "1" {
		t.Skip("restarts the shared dockerd: set HYPERFUNC_DISRUPTIVE=1 and run this package alone")
	}
	if os.Geteuid() != 0 {
		msg := "restarting dockerd needs root"
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
}

// TestDockerdRestart: a running call ends FAILED with a clear message when
// dockerd restarts under it, and the queue keeps going: a call queued while
// the engine is down and one made after it came back both finish.
func TestDockerdRestart(t *testing.T) {
	requireDisruptive(t)
	dc := harness.Docker(t)
	t.Cleanup(func() { ensureDockerd(t, dc) })
	a := harness.StartAgent(t, harness.AgentOptions{Dev: true})
	c := a.Client()
	ctx := context.Background()

	sleeper, quick := harness.Name("sleeper"), harness.Name("quick")
	for _, spec := range []*api.FunctionSpec{
		{Name: sleeper, Image: "ubuntu", Command: []string{"sleep", "3600"}}, // still running when dockerd stops, however slow the machine
		{Name: quick, Image: "ubuntu", Command: []string{"cat"}},
	} {
		if _, err := c.Functions().Create(ctx, spec); err != nil {
			t.Fatal(err)
		}
	}
	long, err := c.Calls().Call(ctx, sleeper, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	harness.Eventually(t, time.Minute, func() (bool, string) {
		cs, err := harness.CallContainers(ctx, dc, long)
		if err != nil {
			return false, err.Error()
		}
		return len(cs) == 1 && cs[0].State == "running", fmt.Sprintf("containers of the call: %v", cs)
	})
	// The engine runs the container a moment before the call's record
	// says RUNNING (the executor's answer goes through Raft): wait for it.
	harness.Eventually(t, time.Minute, func() (bool, string) {
		call, _, err := c.Calls().Info(ctx, long, nil)
		if err != nil {
			return false, err.Error()
		}
		return call.State == api.StateRunning, fmt.Sprintf("call before the restart: %+v", call)
	})

	// Stop dockerd as an operator would: SIGTERM, wait for it to exit.
	pid := dockerdPID(t)
	cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	t.Logf("stopping dockerd pid %d (%s)", pid, strings.ReplaceAll(strings.TrimRight(string(cmdline), "\x00"), "\x00", " "))
	stopped := time.Now()
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	harness.Eventually(t, 90*time.Second, func() (bool, string) {
		_, err := os.Stat(fmt.Sprintf("/proc/%d", pid))
		return os.IsNotExist(err), fmt.Sprintf("dockerd pid %d still runs", pid)
	})
	t.Logf("dockerd stopped after %s", time.Since(stopped).Round(time.Millisecond))

	// The running call ends FAILED, with a message that says what happened.
	call := harness.WaitCall(t, c, long, 2*time.Minute, false)
	if call.State != api.StateFailed {
		t.Fatalf("call after dockerd stopped: %s reason %q %q", call.State, call.Reason, call.Message)
	}
	// The function did not fail: the engine stopped it. Saying "exit code
	// 143" (dockerd's SIGTERM) blames the function.
	if call.Reason != api.ReasonLost || !strings.Contains(strings.ToLower(call.Message), "engine") {
		t.Errorf("call after dockerd stopped: reason %q message %q, want reason %q and a message that the engine went away",
			call.Reason, call.Message, api.ReasonLost)
	}
	t.Logf("the running call ended %s (%s): %s", call.State, call.Reason, call.Message)
	if _, _, err := c.Calls().Output(ctx, long, true); api.StatusCode(err) != 500 {
		t.Errorf("get of the lost call: %v, want HTTP 500", err)
	}

	// A call made while the engine is down is accepted and waits.
	during, err := c.Calls().Call(ctx, quick, strings.NewReader("queued while dockerd was down\n"), nil)
	if err != nil {
		t.Fatalf("call while dockerd is down: %v", err)
	}

	startDockerd(t)
	t.Logf("dockerd back after %s", time.Since(stopped).Round(time.Millisecond))
	if err := a.WaitHealthy(ctx, time.Minute); err != nil {
		t.Fatalf("agent after the restart: %v", err)
	}

	after, err := c.Calls().Call(ctx, quick, strings.NewReader("after the restart\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	for id, want := range map[string]string{during: "queued while dockerd was down\n", after: "after the restart\n"} {
		call := harness.WaitCall(t, c, id, 2*time.Minute, false)
		if call.State != api.StateFinished {
			t.Errorf("call %s: %s reason %q %q", id, call.State, call.Reason, call.Message)
			continue
		}
		body, _, err := c.Calls().Output(ctx, id, false)
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		buf.ReadFrom(body)
		body.Close()
		if buf.String() != want {
			t.Errorf("output of %s: %q, want %q", id, buf.String(), want)
		}
	}
}

func dockerdPID(t *testing.T) int {
	t.Helper()
	out, err := exec.Command("pidof", "dockerd").Output()
	if err != nil {
		t.Fatalf("pidof dockerd: %v", err)
	}
	f := strings.Fields(string(out))
	if len(f) != 1 {
		t.Fatalf("pidof dockerd: %q, want one process", out)
	}
	pid, err := strconv.Atoi(f[0])
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

// startDockerd starts dockerd the way it was started: by
// scripts/setup-docker.sh, which also waits until it answers with runsc and
// the registry mirror.
func startDockerd(t *testing.T) {
	t.Helper()
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", filepath.Join(root, "scripts", "setup-docker.sh"))
	cmd.Env = append(os.Environ(), "SKIP_IMAGES=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("scripts/setup-docker.sh: %v\n%s", err, out)
	}
}

// ensureDockerd restarts dockerd if a failed test left it down.
func ensureDockerd(t *testing.T, dc *client.Client) {
	// 30 s: a slow ping from a busy engine must not restart a dockerd
	// that runs.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := dc.Ping(ctx); err == nil {
		return
	}
	t.Log("dockerd is down after the test: starting it again")
	startDockerd(t)
}

func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", err
	}
	return filepath.Dir(strings.TrimSpace(string(out))), nil
}
