package shim

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The stderr preview keeps exactly StderrPreview bytes (at the limit and
// one past it), all of stderr still reaches the shim's own stderr, and the
// preview is in place when the run ends (before result.json is written).
func TestStderrPreview(t *testing.T) {
	for _, tc := range []struct {
		name  string
		write string
		keep  string
	}{
		{"at-limit", "12345678", "12345678"},
		{"past-limit", "123456789", "12345678"},
		{"empty", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := envelope(t, sh("printf '%s' '"+tc.write+"' >&2; echo out")...)
			env.StderrPreview = 8
			errFile, err := os.Create(filepath.Join(t.TempDir(), "shim-stderr"))
			if err != nil {
				t.Fatal(err)
			}
			defer errFile.Close()
			r := testRunner(t)
			r.Stderr = errFile
			res := r.Run(env)
			if res.Error != "" || res.ExitCode != 0 {
				t.Fatalf("result %+v", res)
			}
			got, err := os.ReadFile(filepath.Join(env.ResultDir, StderrFile))
			if err != nil || string(got) != tc.keep {
				t.Fatalf("preview %q, %v; want %q", got, err, tc.keep)
			}
			all, _ := os.ReadFile(errFile.Name())
			if string(all) != tc.write {
				t.Fatalf("shim stderr %q, want %q", all, tc.write)
			}
			if string(stdoutOf(t, env)) != "out\n" {
				t.Fatalf("stdout %q", stdoutOf(t, env))
			}
		})
	}
}

// Without StderrPreview no preview file is made.
func TestStderrPreviewOff(t *testing.T) {
	env := envelope(t, sh("echo err >&2")...)
	r := testRunner(t)
	r.Stderr, _ = os.Create(filepath.Join(t.TempDir(), "e"))
	if res := r.Run(env); res.ExitCode != 0 {
		t.Fatalf("result %+v", res)
	}
	if _, err := os.Lstat(filepath.Join(env.ResultDir, StderrFile)); !os.IsNotExist(err) {
		t.Fatalf("preview file without StderrPreview: %v", err)
	}
}

func TestStderrPreviewBound(t *testing.T) {
	env := envelope(t, "true")
	env.StderrPreview = MaxStderrPreview
	if err := env.Validate(); err != nil {
		t.Fatalf("at the bound: %v", err)
	}
	env.StderrPreview = MaxStderrPreview + 1
	if err := env.Validate(); err == nil || !strings.Contains(err.Error(), "stderr_preview") {
		t.Fatalf("past the bound: %v", err)
	}
}

// TestStderrPreviewFIFONoHang: a FIFO the command left where the preview
// goes (nobody reads it once the command is dead) must not block the shim
// for ever: it wrote no result.json and the call outlived its timeout
// (found in review: hftestfn-style mkfifo /alloc/data/stderr hung a sealed
// container on runsc indefinitely).
func TestStderrPreviewFIFONoHang(t *testing.T) {
	dir := t.TempDir()
	if err := syscall.Mkfifo(filepath.Join(dir, StderrFile), 0o666); err != nil {
		t.Fatal(err)
	}
	tee := &stderrTee{keep: []byte("err\n")}
	done := make(chan error, 1)
	go func() { done <- tee.write(dir) }()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("wrote the preview into a FIFO")
		}
	case <-time.After(time.Minute): // only a hang: a blocked open never returns
		t.Fatal("writing the stderr preview blocked on a FIFO")
	}
}
