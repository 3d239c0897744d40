package shim

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestProcState(t *testing.T) {
	for stat, want := range map[string]byte{
		"12 (sh) S 1 12 12 0":          'S',
		"13 (a) b) Z 1 13 13 0":        'Z', // a name with ") " in it
		"14 (x) X 1":                   'X',
		"15 (unterminated":             '?',
		"16 (y)":                       '?',
		"17 (hftestfn) R 1 17 17 0 -1": 'R',
	} {
		if got := procState(stat); got != want {
			t.Errorf("procState(%q) = %c, want %c", stat, got, want)
		}
	}
}

func TestOthersAlive(t *testing.T) {
	proc := t.TempDir()
	write := func(pid, stat string) {
		if err := os.MkdirAll(filepath.Join(proc, pid), 0o755); err != nil {
			t.Fatal(err)
		}
		if stat != "" {
			if err := os.WriteFile(filepath.Join(proc, pid, "stat"), []byte(stat), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	write("1", "1 (hf-shim) S 0 1 1 0")
	write("self", "")                  // not a PID
	write("7", "7 (zombie) Z 1 7 7 0") // dead
	write("9", "")                     // vanished between the listing and its stat
	if n, err := othersAlive(proc, 1); n != 0 || err != nil {
		t.Fatalf("othersAlive = %d, %v; want 0 (only self, a zombie and a vanished one)", n, err)
	}
	write("8", "8 (linger) S 1 8 8 0")
	write("10", "10 (stopped) T 1 10 10 0")
	if n, err := othersAlive(proc, 1); n != 2 || err != nil {
		t.Fatalf("othersAlive = %d, %v; want 2", n, err)
	}
	if _, err := othersAlive(filepath.Join(proc, "none"), 1); err == nil {
		t.Fatal("an unreadable /proc must not count as no process left")
	}
}

func TestParseUser(t *testing.T) {
	c, err := ParseUser("65534:65533")
	if err != nil || c.Uid != 65534 || c.Gid != 65533 || c.Groups == nil || len(c.Groups) != 0 {
		t.Fatalf("ParseUser = %+v, %v", c, err)
	}
	if c, err := ParseUser("4294967295:0"); err != nil || c.Uid != 1<<32-1 {
		t.Fatalf("the largest uid: %+v, %v", c, err)
	}
	for _, bad := range []string{"", "65534", "nobody:nogroup", "1:", ":1", "-1:1", "4294967296:1", "1:2:3"} {
		if _, err := ParseUser(bad); err == nil {
			t.Errorf("ParseUser(%q) accepted", bad)
		}
	}
}

// sealWriter records the seal and whether result.json was complete then.
type sealWriter struct {
	dir       string
	got       strings.Builder
	resultSet bool
}

func (w *sealWriter) Write(p []byte) (int, error) {
	if b, err := os.ReadFile(filepath.Join(w.dir, ResultFile)); err == nil && json.Valid(b) {
		w.resultSet = true
	}
	return w.got.Write(p)
}

func TestRunFileSeal(t *testing.T) {
	for _, alone := range []bool{true, false} {
		env := envelope(t, "sh", "-c", "echo out; sleep 0 &")
		data, err := json.Marshal(env)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(t.TempDir(), "payload")
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		r := testRunner(t)
		calls := 0
		var resultBefore []byte
		r.EndOthers = func() bool {
			calls++
			// Nothing is written before every process has ended.
			resultBefore, _ = os.ReadFile(filepath.Join(env.ResultDir, ResultFile))
			return alone
		}
		w := &sealWriter{dir: env.ResultDir}
		r.Seal = w
		if code := r.RunFile(path); code != 0 {
			t.Fatalf("exit %d", code)
		}
		if calls != 1 || resultBefore != nil {
			t.Fatalf("EndOthers called %d times, result.json before it: %q", calls, resultBefore)
		}
		if alone && (w.got.String() != SealLine(env.CallID) || !w.resultSet) {
			t.Fatalf("seal %q, result.json complete before it: %v", w.got.String(), w.resultSet)
		}
		if !alone && w.got.Len() != 0 {
			t.Fatalf("a sandbox with processes left was sealed: %q", w.got.String())
		}
	}
}

// TestRunAsCredential: the command runs as the Credential's user (this
// needs root, as the shim in a sealable sandbox has it).
func TestRunAsCredential(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root to change user (CI runs as root)")
	}
	env := envelope(t, "sh", "-c", "id -u; id -g; id -G")
	if err := os.Chmod(env.ResultDir, 0o777); err != nil {
		t.Fatal(err)
	}
	r := testRunner(t)
	r.Credential = &syscall.Credential{Uid: 65534, Gid: 65533, Groups: []uint32{}}
	if res := r.Run(env); res.ExitCode != 0 || res.Error != "" {
		t.Fatalf("result %+v", res)
	}
	if got := string(stdoutOf(t, env)); got != "65534\n65533\n65533\n" {
		t.Fatalf("id: %q", got)
	}
}

func TestForUser(t *testing.T) {
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(name, text string) {
		if err := os.WriteFile(filepath.Join(root, "etc", name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("passwd", "root:x:0:0:root:/root:/bin/sh\n# a comment\nnobody:x:65534:65534:nobody:/home:/bin/false\napp:x:1000:1000::/srv/app:/bin/sh\nshort:x:1001\n")
	write("group", "root:x:0:\nnogroup:x:65534:\naudio:x:29:app,other\nvideo:x:44:other\nstaff:x:50:app\napp:x:1000:app\nbad:x:zz:app\n")
	c := &syscall.Credential{Uid: 1000, Gid: 1000}
	if home := ForUser(root, c); home != "/srv/app" || fmt.Sprint(c.Groups) != "[29 50]" {
		t.Fatalf("app: home %q groups %v; want /srv/app [29 50] (its own gid 1000 is not repeated)", home, c.Groups)
	}
	c = &syscall.Credential{Uid: 65534, Gid: 65534, Groups: []uint32{}}
	if home := ForUser(root, c); home != "/home" || len(c.Groups) != 0 {
		t.Fatalf("nobody: home %q groups %v", home, c.Groups)
	}
	// A uid the image does not list: "/" and no groups, as Docker does.
	c = &syscall.Credential{Uid: 4242, Gid: 4242, Groups: []uint32{}}
	if home := ForUser(root, c); home != "/" || len(c.Groups) != 0 {
		t.Fatalf("unlisted: home %q groups %v", home, c.Groups)
	}
	// A FIFO for /etc/passwd (the image is the function author's) is
	// not read: no hang, and "/" as for an unlisted uid.
	if err := os.Remove(filepath.Join(root, "etc", "passwd")); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(root, "etc", "passwd"), 0o644); err != nil {
		t.Fatal(err)
	}
	c = &syscall.Credential{Uid: 1000, Gid: 1000, Groups: []uint32{}}
	if home := ForUser(root, c); home != "/" || len(c.Groups) != 0 {
		t.Fatalf("FIFO passwd: home %q groups %v", home, c.Groups)
	}
	// No /etc at all (a scratch image).
	if home := ForUser(filepath.Join(root, "none"), c); home != "/" {
		t.Fatalf("no /etc: home %q", home)
	}
}
