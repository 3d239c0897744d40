package nomadjob

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	nomad "github.com/hashicorp/nomad/api"

	"github.com/hyperfunc/hyperfunc/executor"
)

// ErrUnavailable marks an error after which the same request may succeed
// later: Nomad could not be reached, had no leader, or answered 5xx for a
// reason of its own. The dispatcher retries such calls (a retried Start is
// safe: it carries the same idempotency token).
//
// It wraps executor.ErrUnavailable, which is what the dispatcher tests for.
var ErrUnavailable = fmt.Errorf("nomad unavailable: %w", executor.ErrUnavailable)

// ErrRefused marks a permanent refusal: an unknown job, bad meta, a payload
// over Nomad's limit, an ACL denial. Retrying the same request cannot help.
var ErrRefused = errors.New("nomad refused the request")

// ErrNotFound marks a job or allocation that Nomad does not know (HTTP 404).
// It is also ErrRefused.
var ErrNotFound = errors.New("not found in nomad")

// Error is what every Nomad request returns on failure. errors.Is(err,
// ErrUnavailable) or errors.Is(err, ErrRefused) tells which kind it is.
type Error struct {
	Op        string // what was asked ("dispatch job hf-a-b")
	Status    int    // HTTP status, 0 when there was no answer
	Body      string // Nomad's plain-text error
	Retryable bool
	NotFound  bool
	Err       error // the underlying error
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("nomad: ")
	b.WriteString(e.Op)
	switch {
	case e.Status != 0 && e.Body != "":
		fmt.Fprintf(&b, ": HTTP %d: %s", e.Status, strings.TrimSpace(e.Body))
	case e.Status != 0:
		fmt.Fprintf(&b, ": HTTP %d", e.Status)
	case e.Err != nil:
		fmt.Fprintf(&b, ": %v", e.Err)
	}
	if e.Retryable {
		b.WriteString(" (unavailable, retryable)")
	}
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// Is makes errors.Is(err, ErrUnavailable / ErrRefused / ErrNotFound) work.
func (e *Error) Is(target error) bool {
	switch target {
	case ErrUnavailable, executor.ErrUnavailable:
		return e.Retryable
	case ErrRefused:
		return !e.Retryable
	case ErrNotFound:
		return e.NotFound
	}
	return false
}

// IsUnavailable reports whether err is a transient Nomad failure.
func IsUnavailable(err error) bool { return errors.Is(err, ErrUnavailable) }

// permanentBodies are the texts of Nomad's HTTP 500 answers that are
// refusals, not outages (fixtures 06, 07, 08, 26, plus the ACL and
// validation texts of the same handlers).
var permanentBodies = []string{
	"parameterized job not found",
	"job not found",
	"payload exceeds maximum size",
	"variables are limited to",
	"invalid path",
	"unpermitted metadata keys",
	"did not provide required meta keys",
	"not a parameterized job",
	"payload is not allowed",
	"payload is required",
	"permission denied",
	"acl token not found",
	"job validation failed",
	"1 error occurred",
	"errors occurred",
	"unknown allocation",
	"alloc lookup failed",
	"no such file or directory",
}

// notFoundBodies are answers that mean the object is gone.
var notFoundBodies = []string{
	"job not found",
	"unknown allocation",
	"no such file or directory",
}

// classify turns an error of the nomad/api client into an *Error.
func classify(op string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		// The caller gave up: not Nomad's fault, and not a refusal either.
		return &Error{Op: op, Err: err, Retryable: true}
	}
	var ure nomad.UnexpectedResponseError
	var pure *nomad.UnexpectedResponseError
	status, body := 0, ""
	switch {
	case errors.As(err, &ure):
		status, body = ure.StatusCode(), ure.Body()
	case errors.As(err, &pure):
		status, body = pure.StatusCode(), pure.Body()
	default:
		// Connection refused, reset, EOF, TLS...: no answer at all.
		return &Error{Op: op, Err: err, Retryable: true}
	}
	e := &Error{Op: op, Status: status, Body: strings.TrimSpace(body), Err: err}
	lower := strings.ToLower(body)
	switch {
	case status == http.StatusNotFound:
		e.NotFound = true
	case status == http.StatusTooManyRequests, status == http.StatusRequestTimeout,
		status == http.StatusBadGateway, status == http.StatusServiceUnavailable,
		status == http.StatusGatewayTimeout:
		e.Retryable = true
	case status >= 500:
		e.Retryable = !containsAny(lower, permanentBodies)
		e.NotFound = containsAny(lower, notFoundBodies)
	}
	return e
}

func containsAny(s string, subs []string) bool {
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}
