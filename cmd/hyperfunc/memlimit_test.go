package main

import (
	"runtime/debug"
	"testing"
)

func TestApplyMemoryLimit(t *testing.T) {
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(-1))
	t.Setenv("GOMEMLIMIT", "")
	if n, err := applyMemoryLimit("512MiB"); err != nil || n != 512<<20 || debug.SetMemoryLimit(-1) != 512<<20 {
		t.Fatalf("512MiB: %d %v", n, err)
	}
	if n, err := applyMemoryLimit("auto"); err != nil || n <= 0 || n != debug.SetMemoryLimit(-1) {
		t.Fatalf("auto: %d %v (host memory %d)", n, err, hostMemory())
	}
	for _, bad := range []string{"lots", "-5", "12XB"} {
		if _, err := applyMemoryLimit(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if n, err := applyMemoryLimit("off"); err != nil || n != 0 {
		t.Fatalf("off: %d %v", n, err)
	}
}
