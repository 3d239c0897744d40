package main

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/hyperfunc/hyperfunc/server"
)

// clusterKeyFile keeps the key a standalone server made for itself.
const clusterKeyFile = "cluster-key"

// resolveClusterKey decides the agent's cluster key. Every server has one,
// so Raft and the internal routes are never open: a server that is to
// form or join a cluster must be given the shared key; a standalone server
// (a dev agent, one node without -join or Consul) makes its own and keeps
// it in its data dir, where an operator finds it to grow the cluster.
func resolveClusterKey(f *agentFlags) (string, error) {
	if f.clusterKey != "" {
		if len(f.clusterKey) < server.MinClusterKeyBytes {
			return "", fmt.Errorf("-cluster-key is %d bytes; use at least %d (e.g. `openssl rand -base64 32`)", len(f.clusterKey), server.MinClusterKeyBytes)
		}
		return f.clusterKey, nil
	}
	if f.bootstrapExpect > 1 || f.join != "" || f.consulAddr != "" {
		return "", errors.New("servers of a cluster must share a -cluster-key (or HYPERFUNC_CLUSTER_KEY): " +
			"it authenticates Raft (mutual TLS) and the server-to-server routes. Generate one with " +
			"`openssl rand -base64 32` and give every server the same; a standalone server keeps the key it made in " +
			"<data-dir>/" + clusterKeyFile)
	}
	p := filepath.Join(f.dataDir, clusterKeyFile)
	b, err := os.ReadFile(p)
	if err == nil {
		return strings.TrimSpace(string(b)), nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("cluster key file: %w", err)
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return "", err
	}
	key := base64.StdEncoding.EncodeToString(raw)
	if err := os.MkdirAll(f.dataDir, 0o700); err != nil {
		return "", fmt.Errorf("data dir: %w", err)
	}
	// Written whole to a temporary file, then linked into place, which
	// fails if the file exists: of two agents started at once on one
	// dir, both end up with the one key on disk (the second is then
	// refused by the data dir's lock), never with one the file lost.
	tmp, err := os.CreateTemp(f.dataDir, clusterKeyFile+".*")
	if err != nil {
		return "", fmt.Errorf("cluster key file: %w", err)
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.WriteString(key + "\n")
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", fmt.Errorf("cluster key file: %w", err)
	}
	if err := os.Link(tmp.Name(), p); errors.Is(err, fs.ErrExist) {
		b, err := os.ReadFile(p)
		if err != nil {
			return "", fmt.Errorf("cluster key file: %w", err)
		}
		return strings.TrimSpace(string(b)), nil
	} else if err != nil {
		return "", fmt.Errorf("cluster key file: %w", err)
	}
	return key, nil
}
