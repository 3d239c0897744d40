package main

import (
	"bufio"
	"fmt"
	"os"
	"runtime/debug"
	"strconv"
	"strings"

	"github.com/docker/go-units"
)

// memLimitShare is the part of the machine's (or the cgroup's) memory the
// agent's Go heap aims to stay under by default: the rest is for Raft's
// page cache, bbolt and the engine next to it.
const memLimitShare = 0.5

// applyMemoryLimit sets the Go runtime's soft memory limit
// (debug.SetMemoryLimit, GOMEMLIMIT's knob) from -memory-limit: a size
// ("4GiB"), "auto" (half the cgroup's limit or of the machine's memory), or
// "off". GOMEMLIMIT in the environment wins over "auto". Without a limit the
// heap grows to twice its live size between collections (GOGC=100), which
// measured RSS at 2.6-3.5x the live heap. It answers the limit set, 0 for
// none.
func applyMemoryLimit(flag string) (int64, error) {
	switch strings.ToLower(flag) {
	case "off", "0", "":
		return 0, nil
	case "auto":
		if os.Getenv("GOMEMLIMIT") != "" {
			return debug.SetMemoryLimit(-1), nil // the runtime read it already
		}
		total := hostMemory()
		if total <= 0 {
			return 0, nil
		}
		limit := int64(float64(total) * memLimitShare)
		debug.SetMemoryLimit(limit)
		return limit, nil
	}
	n, err := units.RAMInBytes(flag)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("-memory-limit %q: use a size like 4GiB, auto or off", flag)
	}
	debug.SetMemoryLimit(n)
	return n, nil
}

// hostMemory is the cgroup's memory limit when there is one (v2, then v1),
// else the machine's memory; 0 when neither can be read.
func hostMemory() int64 {
	for _, p := range []string{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"} {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
		// "max" or a v1 "no limit" (a page-rounded MaxInt64) mean none.
		if err == nil && n > 0 && n < 1<<60 {
			return n
		}
	}
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var kb int64
		if _, err := fmt.Sscanf(sc.Text(), "MemTotal: %d kB", &kb); err == nil {
			return kb << 10
		}
	}
	return 0
}
