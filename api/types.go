// Package api is the Go client of the hyperfunc HTTP API and the wire types it
// speaks. Like nomad/api it imports only the standard library, so the CLI and
// third-party tools can depend on it without pulling in the server.
package api

import (
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Call states as users see them. STARTING is internal to the server and is
// shown as RUNNING.
const (
	StatePending  = "PENDING"
	StateRunning  = "RUNNING"
	StateFinished = "FINISHED"
	StateFailed   = "FAILED"
	StateCanceled = "CANCELED"
)

// Failure reasons of a FAILED call. They pick the HTTP status of `get`
// (timeout 504, output too large 509, everything else 500).
const (
	ReasonExit      = "exit"     // the command exited non-zero
	ReasonTimeout   = "timeout"  // the function's timeout stopped it
	ReasonOutput    = "output"   // stdout exceeded the limit
	ReasonImage     = "image"    // the image could not be pulled or started
	ReasonLost      = "lost"     // the executor lost track of it (node lost, engine restarted)
	ReasonExecutor  = "executor" // the executor refused the call
	ReasonCancelled = "canceled" // a user canceled it
)

// Sizes are the Hyper container sizes, mapped to CPU (MHz, as Nomad counts
// it) and memory (MiB).
var Sizes = map[string]Resources{
	"s1": {CPU: 100, MemoryMB: 64},
	"s2": {CPU: 250, MemoryMB: 128},
	"s3": {CPU: 500, MemoryMB: 256},
	"s4": {CPU: 1000, MemoryMB: 512},
	"m1": {CPU: 1000, MemoryMB: 1024},
	"m2": {CPU: 2000, MemoryMB: 2048},
	"m3": {CPU: 2000, MemoryMB: 4096},
	"l1": {CPU: 4000, MemoryMB: 4096},
	"l2": {CPU: 4000, MemoryMB: 8192},
	"l3": {CPU: 8000, MemoryMB: 16384},
}

// DefaultSize is the size of a function created without --size.
const DefaultSize = "s4"

// Resources of one function container.
type Resources struct {
	CPU      int `json:"cpu"`       // MHz
	MemoryMB int `json:"memory_mb"` // MiB
}

// FunctionSpec is the body of a create request.
type FunctionSpec struct {
	Name       string            `json:"name"`
	Image      string            `json:"image"`
	Command    []string          `json:"command,omitempty"`
	Entrypoint []string          `json:"entrypoint,omitempty"`
	Workdir    string            `json:"workdir,omitempty"`
	Env        map[string]string `json:"env,omitempty"`
	Labels     map[string]string `json:"labels,omitempty"`
	Size       string            `json:"size,omitempty"`
	Timeout    int64             `json:"timeout,omitempty"` // seconds; 0 means no limit
	// User the command runs as: "uid[:gid]" or a name the image knows;
	// empty means nobody (65534:65534), "root" is uid 0 for images that
	// need it.
	User string `json:"user,omitempty"`
	// Warm is how many pre-started sandboxes to keep for the function's
	// calls, 0..MaxWarm; each serves one call and is replaced.
	Warm int `json:"warm,omitempty"`
}

// MaxWarm bounds a function's warm sandboxes.
const MaxWarm = 16

// FunctionUpdate is the body of an update request. Nil fields stay as they
// are; Env entries are merged into the function's env.
type FunctionUpdate struct {
	Image   *string           `json:"image,omitempty"`
	Command []string          `json:"command,omitempty"`
	Env     map[string]string `json:"env,omitempty"`
	Size    *string           `json:"size,omitempty"`
	Timeout *int64            `json:"timeout,omitempty"`
	User    *string           `json:"user,omitempty"`
	Warm    *int              `json:"warm,omitempty"`
	Refresh bool              `json:"refresh,omitempty"` // rotate the secret address
}

// Function is a stored function. Address carries the secret and is only
// present in the answer to create and to update with Refresh: the server
// keeps just a hash of the secret.
type Function struct {
	Name        string            `json:"name"`
	Owner       string            `json:"owner"`
	Image       string            `json:"image"`
	Command     []string          `json:"command,omitempty"`
	Entrypoint  []string          `json:"entrypoint,omitempty"`
	Workdir     string            `json:"workdir,omitempty"`
	Env         map[string]string `json:"env,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	Size        string            `json:"size"`
	Resources   Resources         `json:"resources"`
	Timeout     int64             `json:"timeout"`
	User        string            `json:"user"` // who the command runs as; "" is nobody
	Warm        int               `json:"warm"` // pre-started sandboxes kept for its calls
	Address     string            `json:"address,omitempty"`
	CreatedAt   time.Time         `json:"created_at"`
	UpdatedAt   time.Time         `json:"updated_at"`
	CreateIndex uint64            `json:"create_index"`
	ModifyIndex uint64            `json:"modify_index"`
	// Stats are its calls per state, only in a list asked with ?stats=true.
	Stats *FunctionStatus `json:"stats,omitempty"`
}

// Call is the record of one call of a function.
type Call struct {
	ID         string    `json:"id"`
	Function   string    `json:"function"`
	Owner      string    `json:"owner"`
	State      string    `json:"state"`
	Reason     string    `json:"reason,omitempty"`
	Message    string    `json:"message,omitempty"`
	ExitCode   int       `json:"exit_code"`
	StdinSize  int64     `json:"stdin_size"`
	StdoutSize int64     `json:"stdout_size"`
	Rotated    bool      `json:"rotated,omitempty"` // its output rotated out of the cache
	CreatedAt  time.Time `json:"created_at"`
	StartedAt  time.Time `json:"started_at,omitzero"`
	FinishedAt time.Time `json:"finished_at,omitzero"`
}

// Done reports whether the call reached a final state.
func (c *Call) Done() bool {
	return c.State == StateFinished || c.State == StateFailed || c.State == StateCanceled
}

// CallAccepted answers an async call.
type CallAccepted struct {
	CallID string `json:"call_id"`
}

// LogEvent is one line of a function's log, as in the Hyper log format.
type LogEvent struct {
	Time     time.Time `json:"time"`
	Function string    `json:"function"`
	CallID   string    `json:"call_id"`
	Kind     string    `json:"kind"` // CALL, PENDING, RUNNING, FINISHED, FAILED, CANCELED
	Text     string    `json:"text,omitempty"`
	Index    uint64    `json:"index"`
}

// Line renders the event in the seed's line format, e.g.
// "2017-03-16T15:05:58Z [PENDING] CallId: 218b...", as exactly one line:
// the text (which quotes a call's stdin, stdout and stderr) has its
// control and non-printable characters and backslashes escaped (\n, \t,
// \x00, \u202e, \\), so a function cannot forge events or write raw
// bytes to a terminal. NDJSON readers get the text unescaped.
func (e LogEvent) Line() string {
	s := e.Time.UTC().Format(time.RFC3339) + " [" + EscapeLogText(e.Kind) + "] CallId: " + EscapeLogText(e.CallID)
	if e.Text != "" {
		s += ", " + EscapeLogText(e.Text)
	}
	return s
}

// EscapeLogText escapes what must not reach a log line raw: backslash,
// control and other non-printable characters (Go's strconv.IsPrint), and
// bytes that are not UTF-8. Printable text, spaces and quotes stay as they
// are, so "HelloWorld\n" reads as HelloWorld\n.
func EscapeLogText(s string) string {
	clean := true
	for _, r := range s {
		if r == '\\' || r == utf8.RuneError || !strconv.IsPrint(r) {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 16)
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case r == '\\':
			b.WriteString(`\\`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case strconv.IsPrint(r):
			b.WriteString(s[i : i+n])
		case r < 0x80:
			fmt.Fprintf(&b, `\x%02x`, r)
		case r <= 0xFFFF:
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			fmt.Fprintf(&b, `\U%08x`, r)
		}
		i += n
	}
	return b.String()
}

// FunctionStatus counts a function's calls per state.
type FunctionStatus struct {
	Function string `json:"function"`
	Pending  int64  `json:"pending"`
	Running  int64  `json:"running"`
	Finished int64  `json:"finished"`
	Failed   int64  `json:"failed"`
	Canceled int64  `json:"canceled"`
}

// User is an account. Quota is the number of calls it may run at once;
// zero means the cluster's default quota.
type User struct {
	Name        string    `json:"name"`
	Admin       bool      `json:"admin"`
	Quota       int       `json:"quota"`
	CreatedAt   time.Time `json:"created_at"`
	ModifyIndex uint64    `json:"modify_index"`
}

// UserQueue is one user's line of GET /v1/queue: calls queued (Pending)
// and started (Running, at most Quota at once), and the stdin bytes they
// hold.
type UserQueue struct {
	User       string `json:"user"`
	Quota      int    `json:"quota"` // the user's own, else the cluster default
	Pending    int    `json:"pending"`
	Running    int    `json:"running"`
	StdinBytes int64  `json:"stdin_bytes"`
}

// QuotaUpdate is the body of a quota change.
type QuotaUpdate struct {
	Quota int `json:"quota"`
}

// TokenRequest creates a token for a user.
type TokenRequest struct {
	User        string `json:"user"`
	ReadOnly    bool   `json:"read_only,omitempty"`
	Description string `json:"description,omitempty"`
}

// Token is an API token. Secret is present only in the answer to create:
// the server stores a hash of it.
type Token struct {
	AccessorID  string    `json:"accessor_id"`
	Secret      string    `json:"secret,omitempty"`
	User        string    `json:"user"`
	ReadOnly    bool      `json:"read_only,omitempty"`
	Description string    `json:"description,omitempty"`
	CreatedAt   time.Time `json:"created_at"`
}

// Member is one server of the cluster.
type Member struct {
	ID       string `json:"id"`
	RaftAddr string `json:"raft_addr"`
	HTTPAddr string `json:"http_addr"`
	// Protocol is the newest Raft entry format the server applies.
	Protocol int `json:"protocol,omitempty"`
}

// RaftServer is one entry of the Raft configuration.
type RaftServer struct {
	ID       string `json:"id"`
	Address  string `json:"address"`
	Leader   bool   `json:"leader"`
	Voter    bool   `json:"voter"`
	HTTPAddr string `json:"http_addr,omitempty"`
}

// Health is the agent's health answer.
type Health struct {
	OK       bool              `json:"ok"`
	Leader   string            `json:"leader"`
	Executor string            `json:"executor"`
	Checks   map[string]string `json:"checks"`
	// AppliedIndex is the last Raft index this server applied.
	AppliedIndex uint64 `json:"applied_index"`
}

// PullRequest asks the executor to pull an image.
type PullRequest struct {
	Image string `json:"image"`
}

// ErrorBody is the JSON body of every error answer.
type ErrorBody struct {
	Error  string `json:"error"`
	CallID string `json:"call_id,omitempty"`
}

// Headers of the API.
const (
	HeaderIndex     = "X-Hyper-Index"
	HeaderToken     = "X-Hyper-Token"
	HeaderCallID    = "X-Hyper-Call-Id"
	HeaderCallState = "X-Hyper-Call-State"
	// HeaderEarlyCallID: a sync call's client that sends it ("true") gets
	// the call ID in a 102 Processing answer before the wait. Opt-in: many
	// HTTP clients (Python's http.client, requests) take any 1xx but 100
	// for the final answer.
	HeaderEarlyCallID = "X-Hyper-Early-Call-Id"
	// HeaderUI marks a request of the web UI: only with it does the API
	// take the token from the UI's session cookie (UICookie). A cross-site
	// form or image cannot set a header, and a cross-site fetch that sets
	// one needs a CORS preflight the agent never grants, so another site
	// cannot make a browser spend the cookie (CSRF).
	HeaderUI = "X-Hyper-UI"
	// UICookie holds the token of a web UI session: HttpOnly (scripts
	// cannot read it), SameSite=Strict, Path=/v1/ (the API only).
	UICookie = "hyper_ui_token"
)
