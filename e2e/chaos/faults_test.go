package chaos

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"
)

// The faults, one at a time, each healed before the next starts, so a
// quorum always remains possible once it heals: what a three-server cluster
// promises to survive.
const (
	faultKillLeader   = "kill-leader"       // SIGKILL the leader, restart it after a while
	faultPause        = "pause"             // SIGSTOP a server (the leader half the time), then SIGCONT
	faultTermRestart  = "term-restart"      // SIGTERM a server (it leaves), start it again
	faultPartition    = "partition"         // cut a server (the leader half the time) off its peers, heal
	faultNomadDown    = "nomad-down"        // the executor answers 500 No cluster leader
	faultNomadUnreach = "nomad-unreachable" // the executor's connections are cut
	faultDropStreams  = "drop-streams"      // the executor drops its event streams
)

var faultKinds = []string{faultKillLeader, faultPause, faultTermRestart, faultPartition, faultNomadDown, faultNomadUnreach, faultDropStreams}

type faultRec struct {
	at   time.Duration // since the run began
	kind string
	node string
	dur  time.Duration // how long the fault held
	note string
	heal time.Duration // from healing to a stable cluster
}

func (f faultRec) String() string {
	s := fmt.Sprintf("%7.1fs %-17s", f.at.Seconds(), f.kind)
	if f.node != "" {
		s += " " + f.node
	}
	if f.dur > 0 {
		s += fmt.Sprintf(" for %.1fs", f.dur.Seconds())
	}
	s += fmt.Sprintf(", stable again %.1fs after healing", f.heal.Seconds())
	if f.note != "" {
		s += " (" + f.note + ")"
	}
	return s
}

type nemesis struct {
	c    *cluster
	h    *history
	logf func(string, ...any)
	mu   sync.Mutex
	log  []faultRec
	gaps []string // what did not heal on its own, and how it was worked around
}

func (nm *nemesis) record(f faultRec) {
	nm.mu.Lock()
	nm.log = append(nm.log, f)
	nm.mu.Unlock()
	nm.logf("fault %s", f)
}

func (nm *nemesis) counts() map[string]int {
	nm.mu.Lock()
	defer nm.mu.Unlock()
	m := map[string]int{}
	for _, f := range nm.log {
		m[f.kind]++
	}
	return m
}

func formatCounts(m map[string]int) string {
	var parts []string
	for _, k := range faultKinds {
		parts = append(parts, fmt.Sprintf("%s=%d", k, m[k]))
	}
	var extra []string
	for k, v := range m {
		found := false
		for _, kk := range faultKinds {
			found = found || kk == k
		}
		if !found {
			extra = append(extra, fmt.Sprintf("%s=%d", k, v))
		}
	}
	sort.Strings(extra)
	return strings.Join(append(parts, extra...), " ")
}

// between draws a duration in [lo, hi).
func (nm *nemesis) between(lo, hi time.Duration) time.Duration {
	return lo + time.Duration(nm.c.randIntN(int(hi-lo)/int(time.Millisecond)))*time.Millisecond
}

// run injects faults until ctx ends: the kinds in a seeded shuffled cycle,
// a calm pause between two. It returns the first fault the cluster did not
// recover from.
func (nm *nemesis) run(ctx context.Context) error {
	var cycle []string
	for ctx.Err() == nil {
		if len(cycle) == 0 {
			cycle = append([]string(nil), activeFaultKinds()...)
			for i := len(cycle) - 1; i > 0; i-- {
				j := nm.c.randIntN(i + 1)
				cycle[i], cycle[j] = cycle[j], cycle[i]
			}
		}
		kind := cycle[0]
		cycle = cycle[1:]
		if err := nm.inject(ctx, kind); err != nil {
			return err
		}
		sleepCtx(ctx, nm.between(time.Second, 3*time.Second))
	}
	return nil
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

const stableTimeout = 60 * time.Second

func (nm *nemesis) inject(ctx context.Context, kind string) error {
	c := nm.c
	f := faultRec{at: time.Since(nm.h.start), kind: kind}
	target := func(preferLeader bool) *node {
		if preferLeader && c.randIntN(2) == 0 {
			lctx, cancel := context.WithTimeout(ctx, 3*time.Second)
			defer cancel()
			if l, err := c.leader(lctx); err == nil {
				return l
			}
		}
		return c.nodes[c.randIntN(len(c.nodes))]
	}
	hold := nm.between(2*time.Second, 6*time.Second)
	switch kind {
	case faultKillLeader:
		// The previous fault may have left an election going (a loaded
		// machine elects slowly): wait for a leader, with a deadline that
		// only catches a cluster that never elects one.
		var l *node
		var err error
		for deadline := time.Now().Add(time.Minute); ; {
			lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			l, err = c.leader(lctx)
			cancel()
			if err == nil || ctx.Err() != nil || time.Now().After(deadline) {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if err != nil {
			return fmt.Errorf("%s: no leader to kill: %w", kind, err)
		}
		f.node, f.dur = l.name, hold
		l.drain()
		l.stop(syscall.SIGKILL, 10*time.Second)
		time.Sleep(hold)
		if err := l.start(); err != nil {
			return err
		}
	case faultPause:
		n := target(true)
		f.node, f.dur = n.name, hold
		n.drain()
		n.signal(syscall.SIGSTOP)
		time.Sleep(hold)
		n.signal(syscall.SIGCONT)
	case faultPartition:
		n := target(true)
		hold = nm.between(3*time.Second, 8*time.Second)
		f.node, f.dur = n.name, hold
		c.net.Cut(n.idx)
		time.Sleep(hold)
		c.net.Heal(n.idx)
	case faultTermRestart:
		n := target(false)
		f.node = n.name
		t0 := time.Now()
		n.drain()
		if !n.stop(syscall.SIGTERM, 30*time.Second) {
			f.note = "did not exit within 30s of SIGTERM; killed"
		}
		f.dur = time.Since(t0)
		if err := n.start(); err != nil {
			return err
		}
		// A server that left is no voter any more; with its old data dir
		// it must find its way back by itself.
		if err := c.waitStable(15 * time.Second); err != nil {
			gap := fmt.Sprintf("%s did not rejoin within 15s after a graceful leave and a restart on its data dir (%v): restarted it on a fresh data dir", n.name, err)
			nm.mu.Lock()
			nm.gaps = append(nm.gaps, gap)
			nm.mu.Unlock()
			f.note = "rejoined only on a fresh data dir"
			n.drain()
			n.stop(syscall.SIGKILL, 10*time.Second)
			n.freshDataDir()
			if err := n.start(); err != nil {
				return err
			}
		}
	case faultNomadDown, faultNomadUnreach:
		path := "/down"
		if kind == faultNomadUnreach {
			path = "/unreachable"
		}
		f.dur = hold
		if err := c.double.post(path + "?on=true"); err != nil {
			return fmt.Errorf("%s: %w", kind, err)
		}
		time.Sleep(hold)
		if err := c.double.post(path + "?on=false"); err != nil {
			return fmt.Errorf("%s heal: %w", kind, err)
		}
	case faultDropStreams:
		if err := c.double.post("/drop-streams"); err != nil {
			return fmt.Errorf("%s: %w", kind, err)
		}
	}
	t0 := time.Now()
	err := c.waitStable(stableTimeout)
	f.heal = time.Since(t0)
	nm.record(f)
	if err != nil {
		return fmt.Errorf("the cluster did not recover from %s: %w", f, err)
	}
	return nil
}

// healAll undoes every fault: used after the run and on the way out.
func (nm *nemesis) healAll() {
	c := nm.c
	c.net.HealAll()
	_ = c.double.post("/down?on=false")
	_ = c.double.post("/unreachable?on=false")
	for _, n := range c.nodes {
		n.signal(syscall.SIGCONT)
		if n.State() == nodeStopped {
			_ = n.start()
		}
	}
}
