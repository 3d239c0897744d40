package shim

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
)

// Exit codes of hf-shim when the user's command did not run to an exit of
// its own. They follow the shell and `docker run` conventions, so a reader of
// a Nomad task event sees the usual meaning:
//
//	ExitShimError (125)   the shim failed before the command ran: unreadable or
//	                      invalid envelope, unknown version, bad workdir,
//	                      unreadable stdin file, result dir not writable.
//	ExitCannotExec (126)  the command was found but could not be executed
//	                      (not executable, bad binary format, exec error).
//	ExitNotFound (127)    argv[0] was not found in PATH (or a script's
//	                      interpreter is missing, e.g. #!/bin/sh in an image
//	                      without a shell).
//	128+N                 the command was killed by signal N (forwarded,
//	                      timeout, stdout over the limit).
//	anything else         the command's own exit code.
//
// In the 125-127 cases result.json carries Error (when ResultDir is known).
const (
	ExitShimError  = 125
	ExitCannotExec = 126
	ExitNotFound   = 127
)

// MaxEnvelopeSize bounds the envelope file the shim reads. A Nomad dispatch
// payload is at most 16 KiB; the local executor may inline up to 1 MiB of
// stdin, which base64 grows by a third.
const MaxEnvelopeSize = 8 << 20

// ErrBadEnvelope is wrapped by every error DecodeEnvelope returns.
var ErrBadEnvelope = errors.New("bad envelope")

// envelopeFields are the exact JSON keys of Envelope. encoding/json matches
// keys case-insensitively, so DisallowUnknownFields alone would accept "ARGV".
var envelopeFields = map[string]bool{
	"v": true, "call_id": true, "argv": true, "env": true, "workdir": true,
	"stdin": true, "stdin_file": true, "stdout_limit": true, "timeout_ms": true,
	"result_dir": true, "once": true, "stderr_preview": true,
}

// DecodeEnvelope strictly decodes and validates an envelope: one JSON object,
// exact field names, no unknown fields, the current version, a non-empty
// argv, non-negative limits, an absolute result dir. StdoutLimit 0 means no
// output at all is kept (every byte counts as over the limit); the frontend
// always sets it.
func DecodeEnvelope(data []byte) (*Envelope, error) {
	if len(data) > MaxEnvelopeSize {
		return nil, fmt.Errorf("%w: %d bytes is more than %d", ErrBadEnvelope, len(data), MaxEnvelopeSize)
	}
	var keys map[string]json.RawMessage
	if err := json.Unmarshal(data, &keys); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadEnvelope, err)
	}
	if keys == nil {
		return nil, fmt.Errorf("%w: not a JSON object", ErrBadEnvelope)
	}
	for k := range keys {
		if !envelopeFields[k] {
			return nil, fmt.Errorf("%w: unknown field %q", ErrBadEnvelope, k)
		}
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var env Envelope
	if err := dec.Decode(&env); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadEnvelope, err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%w: trailing data after the object", ErrBadEnvelope)
	}
	if err := env.Validate(); err != nil {
		return nil, err
	}
	return &env, nil
}

// Validate checks the rules DecodeEnvelope enforces after decoding.
func (e *Envelope) Validate() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrBadEnvelope, fmt.Sprintf(format, a...))
	}
	switch {
	case e.Version != EnvelopeVersion:
		return bad("unknown version %d (this shim speaks %d)", e.Version, EnvelopeVersion)
	case len(e.Argv) == 0 || e.Argv[0] == "":
		return bad("empty argv")
	case e.StdoutLimit < 0:
		return bad("negative stdout_limit %d", e.StdoutLimit)
	case e.StderrPreview < 0 || e.StderrPreview > MaxStderrPreview:
		return bad("stderr_preview %d is outside 0..%d", e.StderrPreview, MaxStderrPreview)
	case e.TimeoutMs < 0:
		return bad("negative timeout_ms %d", e.TimeoutMs)
	case e.ResultDir == "" || !filepath.IsAbs(e.ResultDir):
		return bad("result_dir %q is not an absolute path", e.ResultDir)
	case e.StdinFile != "" && len(e.Stdin) > 0:
		return bad("both stdin and stdin_file are set")
	}
	for i, a := range e.Argv {
		if strings.IndexByte(a, 0) >= 0 {
			return bad("argv[%d] contains a NUL byte", i)
		}
	}
	for k, v := range e.Env {
		if k == "" || strings.ContainsAny(k, "=\x00") || strings.IndexByte(v, 0) >= 0 {
			return bad("invalid env variable %q", k)
		}
	}
	for name, p := range map[string]string{"workdir": e.Workdir, "stdin_file": e.StdinFile, "result_dir": e.ResultDir} {
		if strings.IndexByte(p, 0) >= 0 {
			return bad("%s contains a NUL byte", name)
		}
	}
	return nil
}

// salvage pulls CallID and ResultDir out of an envelope that failed strict
// decoding, so the failure can still be reported in result.json.
func salvage(data []byte) (callID, resultDir string) {
	var e struct {
		CallID    string `json:"call_id"`
		ResultDir string `json:"result_dir"`
	}
	if json.Unmarshal(data, &e) != nil || !filepath.IsAbs(e.ResultDir) || strings.IndexByte(e.ResultDir, 0) >= 0 {
		return e.CallID, ""
	}
	return e.CallID, e.ResultDir
}
