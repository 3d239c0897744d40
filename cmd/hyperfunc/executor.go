package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/hashicorp/go-hclog"

	"github.com/hyperfunc/hyperfunc/localexec"
	"github.com/hyperfunc/hyperfunc/nomadjob"
	"github.com/hyperfunc/hyperfunc/server"
)

// buildExecutor picks Nomad when an address is configured and the local
// Docker engine otherwise (the embedded default on one machine).
func buildExecutor(ctx context.Context, f *agentFlags, logger hclog.Logger) (server.Executor, func(), error) {
	level := slog.LevelInfo
	if logger.IsDebug() {
		level = slog.LevelDebug
	}
	var handler slog.Handler = slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})
	if f.logJSON {
		handler = slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level})
	}
	slogger := slog.New(handler)
	if f.nomadAddr == "" {
		if f.shimPath == "" {
			return nil, nil, fmt.Errorf("the local docker executor runs every call under hf-shim: put it next to hyperfunc (make build does) or pass -shim-path")
		}
		e, err := localexec.New(ctx, localexec.Config{
			Logger: slogger,
			// Under the data dir: the call dirs outlive this process, so the
			// next leader on this machine collects what a dead one left.
			StateDir:  filepath.Join(f.dataDir, "calls"),
			ShimPath:  f.shimPath,
			ClusterID: server.ClusterID(f.clusterKey),
		})
		if err != nil {
			return nil, nil, fmt.Errorf("local docker executor: %w (is dockerd running? scripts/setup-docker.sh starts one)", err)
		}
		logger.Info("running calls on the local Docker engine", "runtime", e.Runtime(), "shim", f.shimPath, "calls", e.StateDir())
		return e, func() { e.Close() }, nil
	}
	cfg := nomadjob.ConfigFromEnv()
	cfg.Address = f.nomadAddr
	cfg.Runtime = f.nomadRuntime
	cfg.Datacenters = splitList(f.nomadDCs)
	cfg.StdoutLimit = f.maxStdout
	cfg.ShimVolume = f.nomadShimVolume
	cfg.NoSeal = f.nomadNoSeal
	cfg.PurgeDelay = f.nomadPurgeDelay
	// The cluster ID is derived from the key, so the executor knows its
	// cluster before the first function: the pull job and the first orphan
	// sweep after a restart are scoped to it too.
	cfg.ClusterID = server.ClusterID(f.clusterKey)
	base := f.publicURL
	if base == "" {
		adv := f.advertiseHTTP
		if adv == "" {
			adv = f.httpAddr
		}
		base = "http://" + adv
	}
	cfg.ArtifactBaseURL = base
	if f.shimPath == "" {
		return nil, nil, fmt.Errorf("the Nomad executor needs the hf-shim binary: put it next to hyperfunc or pass -shim-path")
	}
	bin, err := os.ReadFile(f.shimPath)
	if err != nil {
		return nil, nil, fmt.Errorf("reading the shim: %w", err)
	}
	archive, sum, err := nomadjob.ShimArchive(bin)
	if err != nil {
		return nil, nil, err
	}
	f.shimArchive = archive
	cfg.ShimSHA256 = sum
	e, err := nomadjob.New(cfg, nomadjob.WithLogger(slogger))
	if err != nil {
		return nil, nil, err
	}
	logger.Info("running calls as Nomad dispatched jobs", "nomad", cfg.Address, "runtime", cfg.Runtime, "shim_volume", cfg.ShimVolume)
	return e, func() { e.Close() }, nil
}
