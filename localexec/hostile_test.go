package localexec_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/hyperfunc/hyperfunc/api"
	"github.com/hyperfunc/hyperfunc/executor"
)

// A function is a hostile tenant: these calls try what one would, and the
// host must not notice.

// The function swaps its stdout file for a link to a host file while it
// runs; the agent reads nothing through it and says so without a path.
func TestHostileStdoutSymlink(t *testing.T) {
	e, cli, img := setup(t)
	secret := filepath.Join(t.TempDir(), "bootstrap-token")
	if err := os.WriteFile(secret, []byte("host secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := spec(t, cli, img, "sh", "-c", "echo hi; ln -sf "+secret+" /.hyperfunc/out/stdout")
	ev := run(t, e, s)
	wantFailed(t, ev, api.ReasonExit, "stdout is a symbolic link")
	if strings.Contains(string(ev.Stdout), "host secret") || strings.Contains(ev.Message, stateDir) {
		t.Fatalf("the host leaked: stdout %q message %q", ev.Stdout, ev.Message)
	}
}

// The function's input is read-only to it, its root filesystem too; /tmp
// and the result dir are writable but bounded.
func TestHostileWritesBounded(t *testing.T) {
	e, cli, img := setup(t)
	script := `
echo x > /.hyperfunc/in/envelope.json 2>/dev/null && echo in:writable || echo in:readonly
touch /rootfs-file 2>/dev/null && echo root:writable || echo root:readonly
dd if=/dev/zero of=/tmp/big bs=1M count=100 2>/dev/null && echo tmp:unbounded || echo tmp:bounded
dd if=/dev/zero of=/.hyperfunc/out/big bs=1M count=10 2>/dev/null && echo out:unbounded || echo out:bounded
rm -f /.hyperfunc/out/big /tmp/big`
	s := spec(t, cli, img, "sh", "-c", script)
	ev := run(t, e, s)
	if ev.Kind != executor.Finished {
		t.Fatalf("got %v %s %s", ev.Kind, ev.Reason, ev.Message)
	}
	want := "in:readonly\nroot:readonly\ntmp:bounded\nout:bounded\n"
	if string(ev.Stdout) != want {
		t.Fatalf("stdout %q, want %q", ev.Stdout, want)
	}
}

// Empty files cost the host's kernel memory whatever the size bound: the
// result dir holds a bounded number. (A function that uses them all up
// leaves its shim no room for the result: its own call is lost, no other.)
func TestHostileFilesBounded(t *testing.T) {
	e, cli, img := setup(t)
	s := spec(t, cli, img, "sh", "-c", "for i in $(seq 5000); do : > /.hyperfunc/out/f$i || break; done")
	h := start(t, e, s)
	ev := final(t, e, s.CallID)
	// Its own call fails, and the function is named as the cause.
	if ev.Kind != executor.Failed || ev.Reason != api.ReasonExit || !strings.Contains(ev.Message, "filled its result dir") {
		t.Errorf("a function that fills its result dir: %v %s %q", ev.Kind, ev.Reason, ev.Message)
	}
	entries, err := os.ReadDir(filepath.Join(stateDir, s.CallID, "out"))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) > 100 {
		t.Fatalf("the function made %d files in its result dir", len(entries))
	}
	release(t, e, cli, h)
}

// A setuid file the function makes in its result dir, even as root, is
// inert on the host: the dir is a nosuid, nodev, noexec tmpfs, in a call
// dir no other host user may enter.
func TestHostileSetuidInert(t *testing.T) {
	e, cli, img := setup(t)
	s := spec(t, cli, img, "sh", "-c", "cp /bin/busybox /.hyperfunc/out/su && chmod 4755 /.hyperfunc/out/su; ls -l /.hyperfunc/out/su")
	s.Function.User = "root"
	h := start(t, e, s)
	ev := final(t, e, s.CallID)
	if ev.Kind != executor.Finished {
		t.Fatalf("got %v %s %s", ev.Kind, ev.Reason, ev.Message)
	}
	dir := filepath.Join(stateDir, s.CallID)
	st, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o700 {
		t.Fatalf("call dir mode %v, want 0700", st.Mode().Perm())
	}
	var fs unix.Statfs_t
	if err := unix.Statfs(filepath.Join(dir, "out"), &fs); err != nil {
		t.Fatal(err)
	}
	for _, f := range []struct {
		bit  int64
		name string
	}{{unix.ST_NOSUID, "nosuid"}, {unix.ST_NODEV, "nodev"}, {unix.ST_NOEXEC, "noexec"}} {
		if fs.Flags&f.bit == 0 {
			t.Errorf("the call's out dir is not mounted %s (flags %#x)", f.name, fs.Flags)
		}
	}
	release(t, e, cli, h)
}

// The container of a call: what `docker inspect` says and what the
// function sees from inside.
func TestContainerSpec(t *testing.T) {
	e, cli, img := setup(t)
	for _, tc := range []struct {
		user, wantID string
	}{{"", "65534"}, {"root", "0"}} {
		s := spec(t, cli, img, "sh", "-c", "id -u; grep CapEff /proc/self/status")
		s.Function.User = tc.user
		h := start(t, e, s)
		ev := final(t, e, s.CallID)
		if ev.Kind != executor.Finished {
			t.Fatalf("user %q: got %v %s %s", tc.user, ev.Kind, ev.Reason, ev.Message)
		}
		lines := strings.Split(strings.TrimSpace(string(ev.Stdout)), "\n")
		if len(lines) != 2 || lines[0] != tc.wantID || strings.Trim(strings.TrimPrefix(lines[1], "CapEff:"), "\t 0") != "" {
			t.Fatalf("user %q: inside the container %q; want uid %s and no capabilities", tc.user, ev.Stdout, tc.wantID)
		}
		ins, err := cli.ContainerInspect(context.Background(), h.Ref)
		if err != nil {
			t.Fatal(err)
		}
		hc := ins.HostConfig
		switch {
		case ins.Config.User != (executor.Function{User: tc.user}).RunAs():
			t.Errorf("user %q", ins.Config.User)
		case len(hc.CapDrop) != 1 || hc.CapDrop[0] != "ALL" || len(hc.CapAdd) != 0:
			t.Errorf("caps drop %v add %v", hc.CapDrop, hc.CapAdd)
		case len(hc.SecurityOpt) != 1 || hc.SecurityOpt[0] != "no-new-privileges":
			t.Errorf("security opts %v", hc.SecurityOpt)
		case hc.PidsLimit == nil || *hc.PidsLimit != executor.DefaultPidsLimit:
			t.Errorf("pids limit %v", hc.PidsLimit)
		case hc.Memory != 128<<20 || hc.MemorySwap != hc.Memory:
			t.Errorf("memory %d swap %d", hc.Memory, hc.MemorySwap)
		case !hc.ReadonlyRootfs || hc.Privileged || string(hc.NetworkMode) != "none":
			t.Errorf("readonly %v privileged %v network %s", hc.ReadonlyRootfs, hc.Privileged, hc.NetworkMode)
		case hc.Runtime != e.Runtime() || e.Runtime() != "runsc":
			t.Errorf("runtime %q (executor %q), want runsc", hc.Runtime, e.Runtime())
		case ins.Config.Labels[executor.LabelExecutor] != "docker" || ins.Config.Labels[executor.LabelCluster] != "local":
			t.Errorf("labels %v", ins.Config.Labels)
		}
		release(t, e, cli, h)
	}
}

// A fork bomb stops at the pids limit: the call fails, the host is fine,
// and a function with a few dozen processes still runs.
func TestPidsLimit(t *testing.T) {
	e, cli, img := setup(t)
	ok := run(t, e, spec(t, cli, img, "sh", "-c", "for i in $(seq 50); do sleep 1 & done; wait; echo done"))
	if ok.Kind != executor.Finished || string(ok.Stdout) != "done\n" {
		t.Fatalf("50 processes: %v %s %q", ok.Kind, ok.Message, ok.Stdout)
	}
	bomb := run(t, e, spec(t, cli, img, "sh", "-c", "for i in $(seq 3000); do sleep 600 & done; echo all-forked"))
	if bomb.Kind == executor.Finished || strings.Contains(string(bomb.Stdout), "all-forked") {
		t.Fatalf("3000 processes ran: %v %q", bomb.Kind, bomb.Stdout)
	}
}

// Two clusters share one engine (two dev agents, a Nomad client's docker):
// one's orphan sweep never touches the other's running call.
func TestOrphansOfAnotherCluster(t *testing.T) {
	_, cli, img := setup(t)
	a := newClusterExec(t, cli, "cluster-a", stateDir)
	b := newClusterExec(t, cli, "cluster-b", t.TempDir())
	s := spec(t, cli, img, "sh", "-c", "sleep 2; echo survived")
	start(t, a, s)
	n, err := b.CleanOrphans(context.Background(), nil) // b keeps nothing
	if err != nil {
		t.Fatal(err)
	}
	if n != 0 || len(containers(t, cli, s.CallID)) != 1 {
		t.Fatalf("cluster-b cleaned %d, container of cluster-a's call: %d", n, len(containers(t, cli, s.CallID)))
	}
	ev := final(t, a, s.CallID)
	if ev.Kind != executor.Finished || string(ev.Stdout) != "survived\n" {
		t.Fatalf("cluster-a's call: %v %s %q", ev.Kind, ev.Message, ev.Stdout)
	}
}
