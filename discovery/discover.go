package discovery

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"
)

// Discover waits until at least expect distinct servers, self included, are
// in the Consul catalog, and returns them sorted by ID. It watches the
// catalog with blocking queries of up to poll each, and retries after poll
// when Consul fails (a 5xx, an unreachable agent). A rejected request (such
// as a wrong ACL token) ends it at once. When ctx ends first, the error says
// how many servers were seen.
func (c *Consul) Discover(ctx context.Context, self Member, expect int, poll time.Duration) ([]Member, error) {
	if _, _, err := self.validate(); err != nil {
		return nil, err
	}
	if expect < 1 || poll <= 0 {
		return nil, fmt.Errorf("discovery: discover needs expect >= 1 and poll > 0, got %d and %s", expect, poll)
	}
	var (
		index   uint64
		seen    = []Member{self}
		lastErr error
	)
	for len(seen) < expect {
		members, next, err := c.members(ctx, index, poll)
		switch {
		case ctx.Err() != nil:
			return nil, discoverError(seen, expect, c.cfg.Service, ctx.Err(), lastErr)
		case err != nil && permanent(err):
			return nil, err
		case err != nil:
			if lastErr == nil { // warn once per outage, not on every retry
				c.logger.Warn("reading consul catalog failed; retrying", "error", err, "retry_every", poll)
			} else {
				c.logger.Debug("reading consul catalog failed; retrying", "error", err)
			}
			lastErr = err
			if !wait(ctx, poll) {
				return nil, discoverError(seen, expect, c.cfg.Service, ctx.Err(), lastErr)
			}
			continue
		}
		lastErr = nil
		all := withSelf(members, self)
		if len(all) != len(seen) {
			c.logger.Info("discovered servers in consul", "seen", len(all), "expect", expect)
		}
		seen = all
		// Blocking-query index rules: start over if the index goes backwards;
		// without an index there is nothing to block on, so pace ourselves.
		if next < index {
			next = 0
		}
		index = next
		if index == 0 && len(seen) < expect && !wait(ctx, poll) {
			return nil, discoverError(seen, expect, c.cfg.Service, ctx.Err(), nil)
		}
	}
	return seen, nil
}

// withSelf returns members plus self (self's own view wins), sorted by ID.
func withSelf(members []Member, self Member) []Member {
	out := []Member{self}
	for _, m := range members {
		if m.ID != self.ID {
			out = append(out, m)
		}
	}
	sortMembers(out)
	return out
}

func discoverError(seen []Member, expect int, service string, ctxErr, lastErr error) error {
	ids := make([]string, len(seen))
	for i, m := range seen {
		ids[i] = m.ID
	}
	err := fmt.Errorf("discovery: saw %d of %d expected servers %v in consul service %q: %w", len(seen), expect, ids, service, ctxErr)
	if lastErr != nil {
		err = fmt.Errorf("%w (last consul error: %w)", err, lastErr)
	}
	return err
}

// permanent reports whether retrying err is pointless: Consul rejected the
// request itself (4xx), except for rate limiting.
func permanent(err error) bool {
	if errors.Is(err, ErrPermissionDenied) {
		return true
	}
	code, ok := statusCode(err)
	return ok && code >= 400 && code < 500 && code != http.StatusTooManyRequests
}

// wait sleeps for d unless ctx ends first; it reports whether ctx is still live.
func wait(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
