package localexec

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/pkg/jsonmessage"
)

// imageCache remembers images known to be present, so a call costs no
// inspect round trip, and joins concurrent pulls of one image.
type imageCache struct {
	mu      sync.Mutex
	present map[string]bool
	pulls   map[string]*pull
}

type pull struct {
	done chan struct{}
	err  error
}

func (c *imageCache) isPresent(ref string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.present[ref]
}

func (c *imageCache) set(ref string, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if ok {
		c.present[ref] = true
	} else {
		delete(c.present, ref)
	}
}

// ensureImage makes ref present locally, pulling it if the engine lacks it.
func (e *Executor) ensureImage(ctx context.Context, ref string) error {
	if e.images.isPresent(ref) {
		return nil
	}
	_, err := e.cli.ImageInspect(ctx, ref)
	if err == nil {
		e.images.set(ref, true)
		return nil
	}
	if !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("inspect image %s: %w", ref, err)
	}
	return e.Pull(ctx, ref)
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
				c.present[ref] = true
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
		return fmt.Errorf("pull %s: %w", ref, err)
	}
	defer rc.Close()
	// A pull that fails half way still answers 200: the error is a message
	// in the JSON progress stream, so the stream must be read to the end.
	if err := jsonmessage.DisplayJSONMessagesStream(rc, io.Discard, 0, false, nil); err != nil {
		return fmt.Errorf("pull %s: %w", ref, err)
	}
	return nil
}
