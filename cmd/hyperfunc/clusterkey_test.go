package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
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
