package fsm

import "time"

// Call states. STARTING is internal: the leader decided to start the call
// and has not heard back from the executor; users see it as RUNNING.
const (
	StatePending  = "PENDING"
	StateStarting = "STARTING"
	StateRunning  = "RUNNING"
	StateFinished = "FINISHED"
	StateFailed   = "FAILED"
	StateCanceled = "CANCELED"
)

// Final reports whether a call in state s has ended.
func Final(s string) bool {
	return s == StateFinished || s == StateFailed || s == StateCanceled
}

// Started reports whether a call in state s holds an executor slot.
func Started(s string) bool { return s == StateStarting || s == StateRunning }

// User is an account; Quota 0 means the cluster's default quota.
type User struct {
	Name        string
	Admin       bool
	Quota       int
	CreatedAt   time.Time
	CreateIndex uint64
	ModifyIndex uint64
}

// Token is an API token; only the SHA-256 of its secret is kept.
type Token struct {
	AccessorID  string
	SecretHash  string
	User        string
	ReadOnly    bool
	Description string
	CreatedAt   time.Time
	CreateIndex uint64
}

// Function is a Docker image plus a command. ID is "owner/name".
type Function struct {
	ID          string
	Owner       string
	Name        string
	Image       string
	Command     []string
	Entrypoint  []string
	Workdir     string
	Env         map[string]string
	Labels      map[string]string
	Size        string
	CPU         int
	MemoryMB    int
	Timeout     int64  // seconds; 0 means no limit
	User        string `json:",omitempty"` // api.FunctionSpec.User
	SecretHash  string
	CreatedAt   time.Time
	UpdatedAt   time.Time
	CreateIndex uint64
	ModifyIndex uint64

	// Warm is how many sandboxes the leader keeps booted for the function's
	// calls (api.FunctionSpec.Warm), 0..MaxWarm; the agent's caps may keep
	// fewer.
	Warm int `json:",omitempty"`
}

// FunctionID joins an owner and a function name.
func FunctionID(owner, name string) string { return owner + "/" + name }

// Call is one call of a function. Stdin, Env and Key are needed only until
// the call ends, and are dropped then to keep finished records small. A
// finished call's record lives as long as its output or its final log
// event is in the function's caches; once both rotated out the record goes
// too, so the state of a busy function stays bounded by its caps.
type Call struct {
	ID              string
	Function        string // Function.ID
	Owner           string
	State           string
	Reason          string
	Message         string
	ExitCode        int
	Stdin           []byte
	StdinSize       int64
	StdoutSize      int64
	Env             map[string]string
	Key             string // call-scoped secret for fetching stdin (Nomad artifacts)
	Ref             string // the executor's name for the started call
	CancelRequested bool
	Rotated         bool   // its output rotated out of the cache
	LogSeq          uint64 // sequence number of its final log event
	Seq             uint64
	CreatedAt       time.Time
	StartedAt       time.Time
	FinishedAt      time.Time
	CreateIndex     uint64
	ModifyIndex     uint64
}

// Member is one server of the cluster.
type Member struct {
	ID       string
	RaftAddr string
	HTTPAddr string
	// Protocol is the newest entry format the server applies (0: a
	// version before the field, see Protocol).
	Protocol int `json:",omitempty"`
}

// Protocol is the entry format this build applies: 1 added
// PayloadStageBin. A leader writes an entry type only when every server of
// the Raft configuration has recorded a Protocol that applies it, since a
// server meeting a type it does not know stops (a rolling upgrade would
// otherwise take the old servers down with the first large payload).
const Protocol = 1

// OwnerUsage counts one owner's queued and started calls, kept exact by
// Apply so that the dispatcher and the queue bound need no scans.
type OwnerUsage struct {
	Owner   string
	Pending int
	Running int // STARTING and RUNNING
	// StdinBytes is the stdin its calls hold until they end (PENDING,
	// STARTING and RUNNING calls), bounded by MaxQueuedBytes.
	StdinBytes int64
}

// FunctionStats counts one function's calls per state.
type FunctionStats struct {
	Function string
	Pending  int64
	Running  int64
	Finished int64
	Failed   int64
	Canceled int64
}

func (s *FunctionStats) add(state string, d int64) {
	switch state {
	case StatePending, StateStarting: // as users see them (server.publicState)
		s.Pending += d
	case StateRunning:
		s.Running += d
	case StateFinished:
		s.Finished += d
	case StateFailed:
		s.Failed += d
	case StateCanceled:
		s.Canceled += d
	}
}

// IndexEntry is the Raft index of the last change of a table, the value of
// X-Hyper-Index for blocking queries.
type IndexEntry struct {
	Key   string
	Value uint64
}
