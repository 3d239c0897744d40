package localexec

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/hyperfunc/hyperfunc/shim"
)

// A function writes its out/ dir as it likes; readDir must read nothing
// but regular files with one link, never follow a link, never block on a
// FIFO, and say what it found without a host path.
func TestReadDirHostile(t *testing.T) {
	secret := filepath.Join(t.TempDir(), "bootstrap-token")
	if err := os.WriteFile(secret, []byte("host secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	goodResult := []byte(`{"v":1,"call_id":"c","exit_code":0,"stdout_bytes":2}`)
	cases := []struct {
		name    string
		plant   func(out string) error
		wantErr string // "" means a clean read
		wantOut string
	}{
		{"regular files", func(out string) error {
			return os.WriteFile(filepath.Join(out, shim.StdoutFile), []byte("ok"), 0o644)
		}, "", "ok"},
		{"stdout a symlink to a host file", func(out string) error {
			return os.Symlink(secret, filepath.Join(out, shim.StdoutFile))
		}, "stdout is a symbolic link", ""},
		{"result.json a symlink", func(out string) error {
			if err := os.Remove(filepath.Join(out, shim.ResultFile)); err != nil {
				return err
			}
			return os.Symlink(secret, filepath.Join(out, shim.ResultFile))
		}, "result.json is a symbolic link", ""},
		{"stdout a hard link", func(out string) error {
			if err := os.WriteFile(filepath.Join(out, "x"), []byte("linked"), 0o644); err != nil {
				return err
			}
			return os.Link(filepath.Join(out, "x"), filepath.Join(out, shim.StdoutFile))
		}, "stdout has 2 hard links", ""},
		{"stdout a FIFO", func(out string) error {
			return syscall.Mkfifo(filepath.Join(out, shim.StdoutFile), 0o644)
		}, "stdout is not a regular file", ""},
		{"stdout a directory", func(out string) error {
			return os.Mkdir(filepath.Join(out, shim.StdoutFile), 0o755)
		}, "stdout is not a regular file", ""},
		{"result.json a directory", func(out string) error {
			if err := os.Remove(filepath.Join(out, shim.ResultFile)); err != nil {
				return err
			}
			return os.Mkdir(filepath.Join(out, shim.ResultFile), 0o755)
		}, "result.json is not a regular file", ""},
		{"stdout missing", func(string) error { return nil }, "stdout is missing", ""},
		{"result.json past its bound", func(out string) error {
			big := append([]byte(`{"v":1,"x":"`), make([]byte, maxResultBytes)...)
			return os.WriteFile(filepath.Join(out, shim.ResultFile), big, 0o644)
		}, "result.json is larger than", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "call")
			out := filepath.Join(dir, outDir)
			if err := os.MkdirAll(out, 0o777); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(out, shim.ResultFile), goodResult, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := tc.plant(out); err != nil {
				t.Fatal(err)
			}
			dr := readDir(dir, 1<<20)
			if tc.wantErr == "" {
				if dr.err != nil || dr.res == nil || string(dr.stdout) != tc.wantOut {
					t.Fatalf("readDir = res %v stdout %q err %v; want a clean read of %q", dr.res, dr.stdout, dr.err, tc.wantOut)
				}
				return
			}
			if dr.err == nil || !strings.Contains(dr.err.Error(), tc.wantErr) {
				t.Fatalf("readDir err = %v; want %q", dr.err, tc.wantErr)
			}
			if strings.Contains(string(dr.stdout), "host secret") {
				t.Fatalf("readDir returned the host file's content")
			}
			if strings.Contains(dr.err.Error(), dir) || strings.Contains(dr.err.Error(), "/") {
				t.Fatalf("error %q shows a host path", dr.err)
			}
		})
	}
}

// The out dir itself replaced by a link (possible only where out/ is a
// plain dir): nothing is read through it.
func TestReadDirOutIsLink(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "call")
	target := t.TempDir()
	if err := os.WriteFile(filepath.Join(target, shim.ResultFile), []byte(`{"v":1}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, filepath.Join(dir, outDir)); err != nil {
		t.Fatal(err)
	}
	dr := readDir(dir, 1<<20)
	if dr.res != nil || dr.err == nil || !strings.Contains(dr.err.Error(), "not a directory") {
		t.Fatalf("readDir through a linked out dir = res %v err %v; want refused", dr.res, dr.err)
	}
}

// claimDir never follows a planted link: the link's target is not created.
func TestClaimDirNoFollow(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "call")
	out := filepath.Join(dir, outDir)
	if err := os.MkdirAll(out, 0o777); err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(t.TempDir(), "created-by-agent")
	if err := os.Symlink(target, filepath.Join(out, shim.StartedFile)); err != nil {
		t.Fatal(err)
	}
	if err := claimDir(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(target); !os.IsNotExist(err) {
		t.Fatalf("claimDir created the link's target (%v)", err)
	}
}

func TestHidePaths(t *testing.T) {
	e := &Executor{stateDir: "/var/lib/hyperfunc/calls", shimPath: "/usr/bin/hf-shim"}
	got := e.hidePaths(`invalid mount config: bind source path does not exist: /var/lib/hyperfunc/calls/c1/in (shim /usr/bin/hf-shim)`)
	if strings.Contains(got, "/var/lib") || strings.Contains(got, "/usr/bin") || !strings.Contains(got, "<calls>/c1/in") {
		t.Fatalf("hidePaths = %q", got)
	}
}
