// Package shim is the contract between the frontend and hf-shim, the small
// static program that is the entrypoint of every function container (Nomad
// and the local Docker executor): the envelope it reads and the result
// record it writes. It imports only the standard library because the shim
// must stay a tiny static binary.
package shim

// EnvelopeVersion is the version of the Envelope written by this build.
const EnvelopeVersion = 1

// Envelope tells the shim what to run.
type Envelope struct {
	Version int               `json:"v"`
	CallID  string            `json:"call_id"`
	Argv    []string          `json:"argv"` // the user's command, argv[0] looked up in PATH
	Env     map[string]string `json:"env,omitempty"`
	Workdir string            `json:"workdir,omitempty"`
	// Stdin is the call's input when it is small enough to travel inline;
	// otherwise StdinFile names the file that holds it (e.g. a Nomad artifact).
	Stdin       []byte `json:"stdin,omitempty"`
	StdinFile   string `json:"stdin_file,omitempty"`
	StdoutLimit int64  `json:"stdout_limit"`
	TimeoutMs   int64  `json:"timeout_ms,omitempty"` // 0: no limit
	// ResultDir is where the shim writes "stdout" and "result.json"
	// (for Nomad: /alloc/data, readable with fs/cat after the task ends).
	ResultDir string `json:"result_dir"`
	// Once makes the shim claim the result dir before it runs the command
	// (it creates StartedFile exclusively): a second start of the same
	// container, or another container given the same dir, runs nothing and
	// leaves the first run's result alone. The local executor sets it, since
	// any leader may start a created container.
	Once bool `json:"once,omitempty"`
	// StderrPreview, when > 0, makes the shim keep the first StderrPreview
	// bytes of the command's stderr in ResultDir/stderr, written before
	// result.json (all of it still goes to the shim's own stderr). A reader
	// that finds result.json then has the preview too, without waiting for
	// the container's logs. 0: the command gets the shim's stderr itself.
	StderrPreview int64 `json:"stderr_preview,omitempty"`
}

// MaxStderrPreview bounds Envelope.StderrPreview.
const MaxStderrPreview = 1 << 20

// Result is the record the shim writes to ResultDir/result.json when the
// command ends.
type Result struct {
	Version     int    `json:"v"`
	CallID      string `json:"call_id"`
	ExitCode    int    `json:"exit_code"`
	Signal      string `json:"signal,omitempty"`
	TimedOut    bool   `json:"timed_out,omitempty"`
	Truncated   bool   `json:"truncated,omitempty"` // stdout went past StdoutLimit
	StdoutBytes int64  `json:"stdout_bytes"`
	StartedAt   string `json:"started_at"` // RFC3339Nano
	EndedAt     string `json:"ended_at"`
	Error       string `json:"error,omitempty"` // the shim itself failed (bad envelope, exec error)
	// ExternalSignal is the first signal the shim received from outside
	// (docker stop, engine shutdown, a cancel) and forwarded to the command.
	// The command's own exit then does not say what happened to the call.
	ExternalSignal string `json:"external_signal,omitempty"`
}

// File names inside ResultDir.
const (
	StdoutFile = "stdout"
	StderrFile = "stderr" // the preview of Envelope.StderrPreview
	ResultFile = "result.json"
	// StartedFile is created in ResultDir when an envelope with Once starts.
	StartedFile = ".started"
)
