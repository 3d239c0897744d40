package fsm

import "errors"

// Business errors of Apply. They keep their identity across the Raft apply
// helper and the HTTP layer, which maps them to status codes.
var (
	ErrNotFound  = errors.New("not found")
	ErrExists    = errors.New("already exists")
	ErrConflict  = errors.New("conflict")
	ErrQueueFull = errors.New("queue full")
	// ErrLimit: a per-user bound (functions per user) is reached.
	ErrLimit = errors.New("limit reached")
)
