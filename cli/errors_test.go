package cli_test

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hyperfunc/hyperfunc/internal/testnet"
)

func TestUnknownFunction(t *testing.T) {
	f := newFakeAPI(t)
	for _, args := range [][]string{
		{"func", "call", "nope"},
		{"func", "call", "--sync", "nope"},
		{"func", "inspect", "nope"},
		{"func", "logs", "nope"},
		{"func", "status", "nope"},
		{"func", "update", "--refresh", "nope"},
		{"func", "rm", "nope"},
	} {
		r := f.run(t, nil, nil, args...)
		if r.code != 1 || r.stderr != "Error: function \"nope\" not found\n" || r.stdout != "" {
			t.Errorf("%v: %+v", args, r)
		}
	}
	r := f.run(t, nil, nil, "func", "get", "no-such-call")
	if r.code != 1 || r.stderr != "Error: call \"no-such-call\" not found\n" {
		t.Errorf("get: %+v", r)
	}
}

func TestRemoveSome(t *testing.T) {
	f := newFakeAPI(t)
	f.run(t, nil, nil, "func", "create", "--name", "a", "ubuntu").must(t)
	f.run(t, nil, nil, "func", "create", "--name", "b", "ubuntu").must(t)
	r := f.run(t, nil, nil, "func", "rm", "a", "nope", "b")
	if r.code != 1 || r.stdout != "a\nb\n" || r.stderr != "Error: function \"nope\" not found\n" || len(f.fns) != 0 {
		t.Errorf("rm a nope b: %+v", r)
	}
}

func TestBadFlag(t *testing.T) {
	f := newFakeAPI(t)
	r := f.run(t, nil, nil, "func", "call", "--bogus", "helloworld")
	if r.code != 2 || r.stderr != "Error: unknown flag: --bogus\nSee 'hyper func call --help'.\n" {
		t.Errorf("%+v", r)
	}
	if f.seq != 0 {
		t.Error("a usage error reached the agent")
	}
}

// closedAddr is testnet.ClosedAddr as a URL.
func closedAddr(t *testing.T) string { return "http://" + testnet.ClosedAddr(t) }

func TestServerUnreachable(t *testing.T) {
	addr := closedAddr(t)
	want := "Error: cannot reach hyperfunc at " + addr + ": connection refused\n"
	for _, args := range [][]string{
		{"pull", "ubuntu"},
		{"func", "ls"},
		{"func", "call", "helloworld"},
		{"func", "get", "--wait", "x"},
	} {
		r := runCLI(t, nil, map[string]string{"HYPER_ADDR": addr}, args...)
		if r.code != 1 || r.stderr != want {
			t.Errorf("%v: %+v, want %q", args, r, want)
		}
	}
	// The flag form, without a scheme.
	r := runCLI(t, nil, nil, "--addr", strings.TrimPrefix(addr, "http://"), "func", "ls")
	if r.code != 1 || r.stderr != want {
		t.Errorf("--addr: %+v", r)
	}
}

func TestWrongToken(t *testing.T) {
	f := newFakeAPI(t)
	f.token = "s3cret"
	r := f.run(t, nil, nil, "func", "ls")
	if r.code != 1 || r.stderr != "Error: missing token (check --token, HYPER_TOKEN or the config file)\n" {
		t.Errorf("no token: %+v", r)
	}
	r = f.run(t, nil, map[string]string{"HYPER_TOKEN": "wrong"}, "func", "ls")
	if r.code != 1 || r.stderr != "Error: permission denied (check --token, HYPER_TOKEN or the config file)\n" {
		t.Errorf("wrong token: %+v", r)
	}
	f.run(t, nil, map[string]string{"HYPER_TOKEN": "wrong"}, "--token", "s3cret", "func", "ls").must(t)
}

func TestStdinTooLarge(t *testing.T) {
	f := newFakeAPI(t)
	f.run(t, nil, nil, "func", "create", "--name", "cat", "alpine", "cat").must(t)
	want := "Error: stdin exceeds 1MiB\n"

	// A known size (buffered by the CLI).
	r := f.run(t, bytes.NewReader(make([]byte, 2<<20)), nil, "func", "call", "cat")
	if r.code != 1 || r.stderr != want || r.stdout != "" {
		t.Errorf("2 MiB: %+v", r)
	}
	r = f.run(t, bytes.NewReader(make([]byte, 2<<20)), nil, "func", "call", "--sync", "cat")
	if r.code != 1 || r.stderr != want {
		t.Errorf("2 MiB sync: %+v", r)
	}
	// A stream too large to buffer, sent chunked.
	r = f.run(t, io.LimitReader(zeros{}, 9<<20), nil, "func", "call", "cat")
	if r.code != 1 || r.stderr != want {
		t.Errorf("9 MiB stream: %+v", r)
	}
	if len(f.calls) != 0 {
		t.Errorf("%d calls queued", len(f.calls))
	}
	// Exactly the limit passes.
	r = f.run(t, bytes.NewReader(make([]byte, 1<<20)), nil, "func", "call", "--sync", "cat").must(t)
	if len(r.stdout) != 1<<20 {
		t.Errorf("1 MiB: %d bytes back", len(r.stdout))
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

func TestConfigPrecedence(t *testing.T) {
	f := newFakeAPI(t)
	f.token = "file-token"
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.json")
	if err := os.WriteFile(cfg, []byte(`{"address": "`+f.srv.URL+`", "token": "file-token"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	closed := closedAddr(t)

	// The file alone.
	runCLI(t, nil, map[string]string{"HYPER_CONFIG": cfg}, "func", "ls").must(t)
	// ~/.hyper/config.json when HYPER_CONFIG is unset.
	if err := os.MkdirAll(filepath.Join(dir, ".hyper"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(cfg, filepath.Join(dir, ".hyper", "config.json")); err != nil {
		t.Fatal(err)
	}
	runCLI(t, nil, map[string]string{"HOME": dir}, "func", "ls").must(t)
	// The environment beats the file.
	r := runCLI(t, nil, map[string]string{"HOME": dir, "HYPER_ADDR": closed}, "func", "ls")
	if r.code != 1 || !strings.Contains(r.stderr, "cannot reach hyperfunc at "+closed) {
		t.Errorf("env over file: %+v", r)
	}
	r = runCLI(t, nil, map[string]string{"HOME": dir, "HYPER_TOKEN": "env-token"}, "func", "ls")
	if r.code != 1 || !strings.Contains(r.stderr, "permission denied") {
		t.Errorf("env token over file: %+v", r)
	}
	// The flag beats the environment.
	runCLI(t, nil, map[string]string{"HOME": dir, "HYPER_ADDR": closed}, "--addr", f.srv.URL, "func", "ls").must(t)
	// Nothing anywhere: the default address.
	r = runCLI(t, nil, map[string]string{"HOME": t.TempDir()}, "--token", "x", "func", "ls")
	if r.code != 1 || !strings.Contains(r.stderr, "hyperfunc at http://127.0.0.1:4680") {
		t.Logf("default address: %+v", r) // an agent may listen there
	}
	// An explicit config file that is missing is an error.
	r = runCLI(t, nil, map[string]string{"HYPER_CONFIG": filepath.Join(dir, "missing.json")}, "func", "ls")
	if r.code != 1 || !strings.Contains(r.stderr, "reading config file") {
		t.Errorf("missing HYPER_CONFIG: %+v", r)
	}
}
