package nomadjob_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/hyperfunc/hyperfunc/executor"
)

// TestRealNomadLogsOutOfReach: a function that leaves
// /alloc/logs/fn.stderr.1 as a link to a host file and writes more than
// the log file size (2 MB) to stderr must not reach that file: Nomad's
// logmon, on the host as root, rotates into fn.stderr.1 following links.
// The task sees an empty tmpfs at /alloc/logs instead (jobspec.go). The
// real agent runs on this host, so the host file is a path here.
func TestRealNomadLogsOutOfReach(t *testing.T) {
	cluster := "hostile-logs-" + fmt.Sprint(time.Now().UnixNano())
	r := newRealEnv(t, "", cluster)
	target := fmt.Sprintf("/tmp/hf-hostile-logmon-%d", time.Now().UnixNano())
	t.Cleanup(func() { _ = os.Remove(target) })
	const original = "ORIGINAL-ROOT-ONLY\n"
	if err := os.WriteFile(target, []byte(original), 0o600); err != nil {
		t.Fatal(err)
	}
	f := executor.Function{
		ID: "real/logmon", Owner: "real", Name: "logmon", Image: realImage(),
		Command: []string{"sh", "-c", "ln -s " + target + " /alloc/logs/fn.stderr.1 && echo linked; " +
			"yes $(head -c 1000 /dev/zero | tr '\\0' A) | head -n 2300 >&2; echo HOSTILE-MARK >&2; ls /alloc/logs"},
		CPU: 100, MemoryMB: 256,
	}
	if err := r.ex.Register(ctx(t), f); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.ex.Deregister(context.Background(), f) })
	ev := r.run(f, spec("logmon-"+cluster, f, ""))
	b, err := os.ReadFile(target)
	if err != nil || string(b) != original {
		t.Fatalf("the host file %s changed (%d bytes, %v); the call: %+v", target, len(b), err, ev)
	}
	// The link went to the task's own tmpfs, and the call ran.
	if ev.Kind != executor.Finished || !strings.HasPrefix(string(ev.Stdout), "linked\n") {
		t.Fatalf("the call: %+v %q", ev, ev.Stdout)
	}
}
