package localexec

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/pkg/jsonmessage"
	"github.com/hyperfunc/hyperfunc/executor"
)

// imageCache remembers the config (entrypoint, cmd) of images known to be
// present, so a call costs no inspect round trip, and joins concurrent
// pulls of one image.
type imageCache struct {
	mu      sync.Mutex
	configs map[string]*imageConfig
	pulls   map[string]*pull
}

// imageConfig is what a call needs of its image: Docker's rules for the
// command (the shim replaces the entrypoint, so the executor composes argv).
type imageConfig struct {
	entrypoint, cmd []string
}

type pull struct {
	done chan struct{}
	err  error
}

func (c *imageCache) get(ref string) *imageConfig {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.configs[ref]
}

func (c *imageCache) set(ref string, cfg *imageConfig) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cfg != nil {
		c.configs[ref] = cfg
	} else {
		delete(c.configs, ref)
	}
}

// image makes ref present locally, pulling it if the engine lacks it, and
// returns its config.
func (e *Executor) image(ctx context.Context, ref string) (*imageConfig, error) {
	if cfg := e.images.get(ref); cfg != nil {
		return cfg, nil
	}
	ins, err := e.cli.ImageInspect(ctx, ref)
	if cerrdefs.IsNotFound(err) {
		if err := e.Pull(ctx, ref); err != nil {
			return nil, err
		}
		ins, err = e.cli.ImageInspect(ctx, ref)
	}
	if err != nil {
		return nil, fmt.Errorf("inspect image %s: %w", ref, err)
	}
	cfg := &imageConfig{}
	if ins.Config != nil {
		cfg.entrypoint, cfg.cmd = ins.Config.Entrypoint, ins.Config.Cmd
	}
	e.images.set(ref, cfg)
	return cfg, nil
}

// argv is the command of a call with Docker's semantics: the function's
// entrypoint (which drops the image's cmd, as `docker run --entrypoint`
// does) or the image's, followed by the function's command or the image's.
func argv(fn executor.Function, img *imageConfig) []string {
	if len(fn.Entrypoint) > 0 {
		return append(slices.Clone(fn.Entrypoint), fn.Command...)
	}
	cmd := fn.Command
	if len(cmd) == 0 {
		cmd = img.cmd
	}
	return append(slices.Clone(img.entrypoint), cmd...)
}

// Pull fetches ref from its registry (hyper pull). Concurrent pulls of the
// same image share one engine pull.
func (e *Executor) Pull(ctx context.Context, ref string) error {
	if ref == "" {
		return errors.New("localexec: pull: empty image name")
	}
	c := &e.images
	c.mu.Lock()
	p, running := c.pulls[ref]
	if !running {
		p = &pull{done: make(chan struct{})}
		c.pulls[ref] = p
	}
	c.mu.Unlock()
	if !running {
		// The pull runs on the executor's context: a caller giving up must
		// not fail the other callers waiting for the same pull.
		e.wg.Add(1)
		go func() {
			defer e.wg.Done()
			p.err = e.pull(e.ctx, ref)
			c.mu.Lock()
			delete(c.pulls, ref)
			if p.err == nil {
				delete(c.configs, ref) // the tag may name a new image now
			}
			c.mu.Unlock()
			close(p.done)
		}()
	}
	select {
	case <-p.done:
		return p.err
	case <-ctx.Done():
		return fmt.Errorf("pull %s: %w", ref, ctx.Err())
	}
}

func (e *Executor) pull(ctx context.Context, ref string) error {
	rc, err := e.cli.ImagePull(ctx, ref, image.PullOptions{})
	if err != nil {
		return e.pullFailed(ctx, ref, err)
	}
	defer rc.Close()
	// A pull that fails half way still answers 200: the error is a message
	// in the JSON progress stream, so the stream must be read to the end.
	if err := jsonmessage.DisplayJSONMessagesStream(rc, io.Discard, 0, false, nil); err != nil {
		return e.pullFailed(ctx, ref, err)
	}
	return nil
}

// pullFailed keeps the engine's words (registry replies, resolver
// addresses) in the agent's log and gives the caller only what failed. An
// engine that went away stays that, so the call is retried.
func (e *Executor) pullFailed(ctx context.Context, ref string, err error) error {
	if engineDown(ctx, err) {
		return fmt.Errorf("pull %s: %w", ref, err)
	}
	e.log.Warn("image pull failed", "image", ref, "err", err)
	return fmt.Errorf("pull %s: %w", ref, executor.ErrNoImage)
}
