package main

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// A server that is to form or join a cluster without a key refuses to
// start and says what to set; -acl makes no difference to that.
func TestClusterWithoutKeyRefused(t *testing.T) {
	for _, args := range [][]string{
		{"-bootstrap-expect", "3"},
		{"-join", "127.0.0.1:1"},
		{"-consul-addr", "127.0.0.1:1", "-acl"},
		{"-acl", "-bootstrap-expect", "3"},
	} {
		var stderr bytes.Buffer
		full := append([]string{"-data-dir", t.TempDir(), "-shim-path", "/bin/true"}, args...)
		if code := agentCommand(full, &stderr); code != 2 || !strings.Contains(stderr.String(), "-cluster-key") {
			t.Errorf("agent %v: exit %d, %q; want 2 and a message naming -cluster-key", args, code, stderr.String())
		}
	}
}

func TestClusterKeyTooShort(t *testing.T) {
	var stderr bytes.Buffer
	if code := agentCommand([]string{"-data-dir", t.TempDir(), "-cluster-key", "short"}, &stderr); code != 2 || !strings.Contains(stderr.String(), "at least 16") {
		t.Fatalf("exit %d, %q", code, stderr.String())
	}
}

// A standalone server makes its own key once and keeps it (0600).
func TestStandaloneKeyKept(t *testing.T) {
	dir := t.TempDir()
	f := &agentFlags{dataDir: dir, bootstrapExpect: 1}
	k1, err := resolveClusterKey(f)
	if err != nil {
		t.Fatal(err)
	}
	k2, err := resolveClusterKey(f)
	if err != nil || k1 != k2 || len(k1) < 16 {
		t.Fatalf("keys %q, %q (%v)", k1, k2, err)
	}
	st, err := os.Stat(filepath.Join(dir, clusterKeyFile))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v", st, err)
	}
}

// Agents starting at once on one fresh dir all get the key the file
// keeps (one was written over another's before, 2 of 40 races), and no
// temporary file stays.
func TestStandaloneKeyOneUnderRace(t *testing.T) {
	dir := t.TempDir()
	keys := make([]string, 8)
	errs := make([]error, 8)
	var wg sync.WaitGroup
	for i := range keys {
		wg.Add(1)
		go func() {
			defer wg.Done()
			keys[i], errs[i] = resolveClusterKey(&agentFlags{dataDir: dir, bootstrapExpect: 1})
		}()
	}
	wg.Wait()
	b, err := os.ReadFile(filepath.Join(dir, clusterKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	for i := range keys {
		if errs[i] != nil || keys[i] != strings.TrimSpace(string(b)) {
			t.Fatalf("agent %d: key %q (%v), the file keeps %q", i, keys[i], errs[i], b)
		}
	}
	if left, _ := filepath.Glob(filepath.Join(dir, clusterKeyFile+".*")); len(left) != 0 {
		t.Fatalf("temporary files left: %v", left)
	}
}

// -dev removes only a data dir it made: a dir the user named keeps its
// files (an adversarial review lost a dir's unrelated files this way).
func TestDevKeepsANamedDataDir(t *testing.T) {
	named := t.TempDir()
	f, err := parseAgentFlags([]string{"-dev", "-data-dir", named}, io.Discard)
	if err != nil || f.tempDataDir {
		t.Fatalf("-dev -data-dir: temp %v, %v", f != nil && f.tempDataDir, err)
	}
	f, err = parseAgentFlags([]string{"-dev"}, io.Discard)
	if err != nil || !f.tempDataDir {
		t.Fatalf("-dev alone: temp %v, %v", f != nil && f.tempDataDir, err)
	}
	os.RemoveAll(f.dataDir)
}

// Without ACLs the HTTP API binds loopback only, unless the operator says
// -insecure-no-acl.
func TestNoACLOnlyOnLoopback(t *testing.T) {
	for _, tc := range []struct {
		args []string
		ok   bool
	}{
		{[]string{"-http-addr", "127.0.0.1:4680"}, true},
		{[]string{"-http-addr", "[::1]:4680"}, true},
		{[]string{"-http-addr", "localhost:4680"}, true},
		{[]string{"-http-addr", "0.0.0.0:4680"}, false},
		{[]string{"-http-addr", ":4680"}, false},
		{[]string{"-http-addr", "0.0.0.0:4680", "-acl"}, true},
		{[]string{"-http-addr", "0.0.0.0:4680", "-insecure-no-acl"}, true},
	} {
		_, err := parseAgentFlags(append([]string{"-data-dir", t.TempDir()}, tc.args...), io.Discard)
		if (err == nil) != tc.ok {
			t.Errorf("%v: err %v, want ok=%v", tc.args, err, tc.ok)
		}
		if err != nil && !strings.Contains(err.Error(), "-acl") {
			t.Errorf("%v: message %q does not say what to set", tc.args, err)
		}
	}
}
