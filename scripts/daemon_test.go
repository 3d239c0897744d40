package scripts

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestDaemonDropsInheritedFDs: setup-docker.sh starts dockerd and the
// registry with none of its caller's file descriptors but stdio. A dockerd
// that inherited the fd of `flock /tmp/hyperfunc-docker.lock make test`
// (the disruptive tests restart dockerd) held that lock for ever.
func TestDaemonDropsInheritedFDs(t *testing.T) {
	dir := t.TempDir()
	lock, out, pidFile := filepath.Join(dir, "lock"), filepath.Join(dir, "out"), filepath.Join(dir, "pid")
	script := `set -e
eval "$(sed -n '/^daemon() {/,/^}/p' setup-docker.sh)"
exec 7>"$1" 9<"$1"
daemon "$2" sh -c 'echo $$ > "$0"; exec sleep 300' "$3"`
	cmd := exec.Command("bash", "-c", script, "bash", lock, out, pidFile)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, b)
	}
	var pid int
	deadline := time.Now().Add(2 * time.Minute)
	for {
		b, err := os.ReadFile(pidFile)
		if n, perr := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && perr == nil {
			pid = n
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the daemon did not start")
		}
		time.Sleep(20 * time.Millisecond)
	}
	defer func() { _ = exec.Command("kill", strconv.Itoa(pid)).Run() }()
	fds, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/fd")
	if err != nil {
		t.Fatal(err)
	}
	for _, fd := range fds {
		if n, _ := strconv.Atoi(fd.Name()); n > 2 {
			target, _ := os.Readlink("/proc/" + strconv.Itoa(pid) + "/fd/" + fd.Name())
			t.Errorf("the daemon inherited fd %d (%s)", n, target)
		}
	}
}
