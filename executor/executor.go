// Package executor holds the values that pass between the dispatcher and the
// executors that run calls (the local Docker engine, Nomad). It is data only:
// the Executor interface itself is declared by its consumer, the server.
package executor

import (
	"errors"
	"strconv"
	"time"
)

// Labels put on every container or job that runs a call, so that the
// executor finds its own work again after a crash.
const (
	LabelCall     = "io.hyperfunc.call"     // call ID
	LabelFunction = "io.hyperfunc.function" // function ID (owner/name)
	LabelManaged  = "io.hyperfunc.managed"  // "true"
	// LabelCluster names the cluster that created the container or job (the
	// cluster ID the first leader commits to Raft). Orphan sweeps touch only
	// their own cluster's work: two clusters may share one engine or Nomad.
	LabelCluster = "io.hyperfunc.cluster"
	// LabelExecutor names the executor that runs it ("docker", "nomad"): a
	// local agent on the engine of a Nomad client must not sweep Nomad's
	// containers as its own orphans.
	LabelExecutor = "io.hyperfunc.executor"
)

// DefaultUser is the user a function's command runs as when the function
// names none: nobody, so that a function cannot own what the shim writes and
// a setuid file it makes is nobody's. Functions whose image needs root say
// so (User "root" or "0").
const DefaultUser = "65534:65534"

// DefaultPidsLimit bounds the tasks of one call's container in the host's
// pids cgroup; a fork bomb stops at it instead of at the host's limit.
// Under gVisor the host sees the sandbox's own threads, not the function's
// processes, and runsc 20221219 ends the whole sandbox when the cgroup is
// full (exit 2) instead of failing fork: measured here, 1024 lets 100
// background processes run and stops 600; 256 already stopped 100.
const DefaultPidsLimit = 1024

// Function is what an executor needs to know of a function to prepare for
// its calls (Nomad: the parameterized job).
type Function struct {
	ID         string // owner/name, unique in the cluster
	Owner      string
	Name       string
	Image      string
	Command    []string
	Entrypoint []string
	Workdir    string
	Env        map[string]string
	CPU        int // MHz
	MemoryMB   int
	Timeout    time.Duration // 0: no limit
	// User is who the command runs as, Docker's --user form ("uid[:gid]",
	// a name the image knows, "root"); empty means DefaultUser.
	User string
}

// RunAs is the user a function's command runs as, in Docker's --user form.
// "root" becomes "0:0", which needs no /etc/passwd in the image (images
// FROM scratch have none).
func (f Function) RunAs() string {
	switch f.User {
	case "":
		return DefaultUser
	case "root":
		return "0:0"
	}
	return f.User
}

// Spec is one call to run.
type Spec struct {
	CallID   string
	Function Function
	// Env is the complete environment of the call: the function's env, the
	// request headers (HTTP_*) and HYPER_CALL_ID / HYPER_FUNC_NAME.
	Env         map[string]string
	Stdin       []byte
	StdoutLimit int64
	// Key is a call-scoped secret, for executors that let a remote client
	// fetch the call's stdin from the frontend (Nomad artifacts).
	Key string
}

// Handle names a started call. Ref is the executor's own name for it (a
// container ID, a dispatched job ID); it may be empty for a call whose
// start was decided but never confirmed.
type Handle struct {
	CallID string
	Ref    string
}

// Kind of an Event.
type Kind int

const (
	// Running: the call is running (Reconcile: still running, and watched again).
	Running Kind = iota + 1
	// Finished: the command exited 0 with its stdout within the limit.
	Finished
	// Failed: anything else that ended the call; Reason says why.
	Failed
	// NotFound: Reconcile found no trace of a call that has no Ref; it never
	// started, so starting it now cannot run it twice.
	NotFound
)

func (k Kind) String() string {
	switch k {
	case Running:
		return "running"
	case Finished:
		return "finished"
	case Failed:
		return "failed"
	case NotFound:
		return "not-found"
	}
	return "unknown"
}

// Event reports what became of a call.
type Event struct {
	CallID    string
	Kind      Kind
	Ref       string
	ExitCode  int
	Stdout    []byte // at most StdoutLimit bytes
	Stderr    string // a short preview
	Truncated bool   // stdout went past the limit (the call is Failed, Reason output)
	Reason    string // api.Reason* for Failed
	Message   string // human-readable cause for Failed
	StartedAt time.Time
	EndedAt   time.Time
}

// WarmTarget is how many pre-started sandboxes an executor keeps booted
// for a function (localexec: containers whose shim waits for its call).
// StdoutLimit is the limit of the calls they will take; 0 means the
// executor's default.
type WarmTarget struct {
	Function    Function
	N           int
	StdoutLimit int64
}

// WarmStats counts an executor's warm pool work since it started.
type WarmStats struct {
	// Hits and Misses: Starts of a function with a pool that found, or
	// did not find, a ready sandbox.
	Hits, Misses int64
	// Ready is the booted, unclaimed sandboxes per function ID.
	Ready map[string]int
}

// StderrPreviewBytes bounds Event.Stderr.
const StderrPreviewBytes = 4096

// ErrUnavailable marks a Start or Reconcile that failed because the
// executor cannot be reached right now (engine down, Nomad answering 500).
// The dispatcher puts such calls back in the queue and retries later
// instead of failing them.
var ErrUnavailable = errors.New("executor unavailable")

// ErrNoImage marks a pull that the registry refused: no such image, no
// access, or a registry that does not answer as one. Its message never
// carries the registry's own answer (a tenant could make the engine fetch
// from any host and read the reply).
var ErrNoImage = errors.New("the image was not found, or its registry refused or could not be reached")

// SizeText writes a byte limit the way the seed's messages do: 1048576 as
// "1MiB", 65536 as "64KiB", anything else in bytes.
func SizeText(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return strconv.FormatInt(n>>20, 10) + "MiB"
	case n >= 1<<10 && n%(1<<10) == 0:
		return strconv.FormatInt(n>>10, 10) + "KiB"
	}
	return strconv.FormatInt(n, 10) + " bytes"
}

// OutputExceeds is the message of a call whose stdout went past limit.
func OutputExceeds(limit int64) string { return "output exceeds " + SizeText(limit) }
