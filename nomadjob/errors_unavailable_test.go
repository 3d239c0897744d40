package nomadjob

import (
	"errors"
	"testing"

	"github.com/hyperfunc/hyperfunc/executor"
)

// The dispatcher knows only executor.ErrUnavailable: a retryable Nomad
// failure must be one, a refusal must not.
func TestUnavailableIsExecutorUnavailable(t *testing.T) {
	retry := &Error{Op: "dispatch", Status: 500, Body: "No cluster leader", Retryable: true}
	refused := &Error{Op: "dispatch", Status: 500, Body: "parameterized job not found"}
	if !errors.Is(retry, executor.ErrUnavailable) || !errors.Is(ErrUnavailable, executor.ErrUnavailable) {
		t.Fatal("retryable nomad errors must be executor.ErrUnavailable")
	}
	if errors.Is(refused, executor.ErrUnavailable) {
		t.Fatal("a refusal must not be retried")
	}
}
