// Package cli implements the hyper command line: `hyper func ...`,
// `hyper pull`, `hyper version` and shell completion. It talks to hyperfunc
// only through package api.
//
// The entry point is Run, which never exits the process: it returns the exit
// code, so tests (unit and end-to-end) drive the CLI in-process.
//
// Exit codes: 0 success, 1 the request or the call failed, 2 usage (bad flag,
// missing or extra argument, bad flag value), 130 interrupted.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/hyperfunc/hyperfunc/api"
)

// Exit codes of Run.
const (
	ExitOK          = 0
	ExitFailure     = 1
	ExitUsage       = 2
	ExitInterrupted = 130
)

// Version is the CLI version, set at build time with
// -ldflags "-X github.com/hyperfunc/hyperfunc/cli.Version=v1.2.3".
var Version = "dev"

// Run runs the hyper CLI with args (without the program name) and returns the
// exit code. env looks up environment variables (nil means os.Getenv).
func Run(args []string, stdin io.Reader, stdout, stderr io.Writer, env func(string) string) int {
	return RunContext(context.Background(), args, stdin, stdout, stderr, env)
}

// RunContext is Run with a context: canceling it (cmd/hyper does on SIGINT)
// stops whatever the command waits for and Run returns ExitInterrupted.
func RunContext(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, env func(string) string) int {
	if env == nil {
		env = os.Getenv
	}
	a := &app{
		ctx:    ctx,
		stdin:  stdin,
		stdout: stdout,
		stderr: stderr,
		env:    env,
		now:    time.Now,
	}
	return a.run(args)
}

// app is the state of one Run: the streams, the environment and the global
// flags. Commands are methods on it.
type app struct {
	ctx    context.Context
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	env    func(string) string
	now    func() time.Time

	// global flags
	addrFlag  string
	tokenFlag string

	client *api.Client
}

func (a *app) run(args []string) int {
	root := a.rootCommand()
	root.SetArgs(args)
	root.SetIn(orEmpty(a.stdin))
	root.SetOut(a.stdout)
	root.SetErr(a.stderr)

	cmd, err := root.ExecuteContextC(a.ctx)
	if err == nil {
		return ExitOK
	}
	if cmd == nil {
		cmd = root
	}

	var f *failure
	switch {
	case errors.As(err, &f):
		if a.ctx.Err() != nil && errors.Is(f.err, context.Canceled) {
			return ExitInterrupted
		}
		if !f.printed {
			fmt.Fprintln(a.stderr, "Error: "+a.describe(f.err))
		}
		return ExitFailure
	default:
		// Flag parse errors, argument count errors, unknown commands and
		// bad flag values: all usage errors.
		fmt.Fprintf(a.stderr, "Error: %s\nSee '%s --help'.\n", err, cmd.CommandPath())
		return ExitUsage
	}
}

func orEmpty(r io.Reader) io.Reader {
	if r == nil {
		return eofReader{}
	}
	return r
}

type eofReader struct{}

func (eofReader) Read([]byte) (int, error) { return 0, io.EOF }

// usageError is a bad invocation: exit code 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

// failure is an error of a command that ran: exit code 1. When printed is
// set, the command already told the user and Run prints nothing more.
type failure struct {
	err     error
	printed bool
}

func (e *failure) Error() string { return e.err.Error() }
func (e *failure) Unwrap() error { return e.err }

// silentFailure makes Run exit 1 without printing: the command has written
// its own message on stderr.
func silentFailure(err error) error { return &failure{err: err, printed: true} }

// runE adapts a command body: its errors are failures (exit 1) unless they
// are usage errors (exit 2).
func runE(fn func(cmd *cobra.Command, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		err := fn(cmd, args)
		if err == nil {
			return nil
		}
		var u *usageError
		var f *failure
		if errors.As(err, &u) || errors.As(err, &f) {
			return err
		}
		return &failure{err: err}
	}
}
