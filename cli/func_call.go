package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/hyperfunc/hyperfunc/api"
)

const (
	// stdinBuffer is how much piped stdin the CLI reads before it sends the
	// call, so the request carries a Content-Length; beyond it, it streams.
	stdinBuffer = 8 << 20
	// expectContinueOver: larger inputs ask the agent first
	// (Expect: 100-continue), so a 413 arrives before the upload.
	expectContinueOver = 64 << 10
	// statePollInterval paces the state polls behind the --wait spinner.
	statePollInterval = time.Second
	// rewaitDelay paces get --wait when the agent answers "not yet".
	rewaitDelay = 200 * time.Millisecond
)

func (a *app) callCommand() *cobra.Command {
	var (
		sync    bool
		headers []string
	)
	cmd := &cobra.Command{
		Use:   "call [OPTIONS] NAME",
		Short: "Call a function",
		Long: `Call a function. When STDIN is piped or redirected it is the call's input;
on a terminal the call gets no input.

Without --sync the call is queued and its ID printed ("CallId: <id>"); fetch
its output later with "hyper func get". With --sync the CLI waits for the end
and writes the call's STDOUT, byte for byte, to its own STDOUT.

Headers given with -H reach the function as environment variables
(Content-Type as HTTP_CONTENT_TYPE).`,
		Example: `  $ hyper func call helloworld
  CallId: 218b7b10-e7f1-4c48-ac3c-66792f8ffc06

  # Call with a payload
  $ echo Hello | hyper func call helloworld

  # Wait for the output; binary input and output are safe
  $ cat picture.jpg | hyper func call --sync resizer > picture_small.jpg

  # Send a header
  $ hyper func call -H "Content-Type: application/json" --sync api < request.json`,
		Args:              exactArgs(1),
		ValidArgsFunction: a.completeFunctionNames(1),
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			name := args[0]
			h, err := parseHeaders(headers)
			if err != nil {
				return err
			}
			c, err := a.api()
			if err != nil {
				return err
			}
			body, large, err := a.callInput()
			if err != nil {
				return err
			}
			if large {
				if h == nil {
					h = make(map[string][]string)
				}
				h.Set("Expect", "100-continue")
			}
			opts := &api.CallOptions{Header: h}
			if !sync {
				id, err := c.Calls().Call(a.ctx, name, body, opts)
				if err != nil {
					return err
				}
				a.printf("CallId: %s\n", id)
				return nil
			}
			sp := startSpinner(a.stderr, isTerminal(a.stderr), a.now, "calling "+name)
			out, id, err := c.Calls().CallSync(a.ctx, name, body, opts)
			sp.Stop()
			if err != nil {
				return callGoesOn(err, id)
			}
			defer out.Close()
			return callGoesOn(a.copyOutput(out), id)
		}),
	}
	f := cmd.Flags()
	f.BoolVar(&sync, "sync", false, "wait for the call to end and write its output")
	f.StringArrayVarP(&headers, "header", "H", nil, "send a request `HEADER` \"Name: value\" (repeatable)")
	return cmd
}

// callGoesOn adds the call ID to an error that cut a sync call short (a
// proxy's timeout, a dropped connection): the call was queued and goes on,
// and "hyper func get" fetches its output later. An answer of the agent (a
// failed call, a 413) is left as it is.
func callGoesOn(err error, id string) error {
	var ae *api.Error
	if err == nil || id == "" || errors.As(err, &ae) {
		return err
	}
	return &goesOnError{err: err, id: id}
}

// goesOnError is a sync call cut short after the agent queued it.
type goesOnError struct {
	err error
	id  string
}

func (e *goesOnError) Error() string { return e.err.Error() }
func (e *goesOnError) Unwrap() error { return e.err }

// callInput returns the call's input: nil when stdin is a terminal (or
// absent), else stdin, buffered when small. large asks for
// Expect: 100-continue.
func (a *app) callInput() (body io.Reader, large bool, err error) {
	if a.stdin == nil || isTerminal(a.stdin) {
		return nil, false, nil
	}
	b, err := io.ReadAll(io.LimitReader(a.stdin, stdinBuffer+1))
	if err != nil {
		return nil, false, fmt.Errorf("reading stdin: %w", err)
	}
	if len(b) <= stdinBuffer {
		return bytes.NewReader(b), len(b) > expectContinueOver, nil
	}
	return io.MultiReader(bytes.NewReader(b), a.stdin), true, nil
}

// copyOutput writes a call's output raw to stdout.
func (a *app) copyOutput(r io.Reader) error {
	if _, err := io.Copy(a.stdout, r); err != nil {
		return fmt.Errorf("reading the call's output: %w", err)
	}
	return nil
}

func (a *app) getCommand() *cobra.Command {
	var wait bool
	cmd := &cobra.Command{
		Use:   "get [OPTIONS] CALL_ID",
		Short: "Get the output of a call",
		Long: `Write the STDOUT of a finished call, byte for byte.

Without --wait, a call that has not ended prints its state on STDERR
("call <id> is RUNNING") and exits 1. With --wait the CLI blocks until the
call finished (or failed). A failed call prints its message on STDERR and
exits 1. Outputs live in a capped cache per function: fetch them regularly.`,
		Example: `  $ hyper func get --wait 218b7b10-e7f1-4c48-ac3c-66792f8ffc06
  HelloWorld`,
		Args: exactArgs(1),
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			id := args[0]
			c, err := a.api()
			if err != nil {
				return err
			}
			var sp *spinner
			if wait {
				sp = a.watchCall(c, id)
			}
			for {
				body, state, err := c.Calls().Output(a.ctx, id, wait)
				if err != nil {
					sp.Stop()
					return err
				}
				if body != nil {
					sp.Stop()
					defer body.Close()
					return a.copyOutput(body)
				}
				if !wait {
					if state == "" {
						state = "not finished"
					}
					fmt.Fprintf(a.stderr, "call %s is %s\n", id, state)
					return silentFailure(errors.New("call not finished"))
				}
				// The agent ended its long poll before the call ended: ask
				// again, paced in case it does not block at all.
				sp.setLabel(callLabel(id, state))
				select {
				case <-a.ctx.Done():
					sp.Stop()
					return a.ctx.Err()
				case <-time.After(rewaitDelay):
				}
			}
		}),
	}
	cmd.Flags().BoolVar(&wait, "wait", false, "block until the call finished (or failed)")
	return cmd
}

func callLabel(id, state string) string {
	if state == "" {
		return "call " + id
	}
	return "call " + id + " " + state
}

// watchCall shows a spinner with the call's state while the CLI waits for
// it, when stderr is a terminal. Stop the returned spinner (nil-safe).
func (a *app) watchCall(c *api.Client, id string) *spinner {
	if !isTerminal(a.stderr) {
		return nil
	}
	sp := startSpinner(a.stderr, true, a.now, callLabel(id, ""))
	ctx, cancel := context.WithCancel(a.ctx)
	go func() {
		<-sp.stop
		cancel()
	}()
	go func() {
		var index uint64
		for ctx.Err() == nil {
			started := time.Now()
			call, meta, err := c.Calls().Info(ctx, id, &api.QueryOptions{WaitIndex: index, WaitTime: 30 * time.Second})
			if err == nil {
				sp.setLabel(callLabel(id, call.State))
				index = meta.LastIndex
			}
			// Pace the polls whatever the agent does with blocking queries.
			if wait := statePollInterval - time.Since(started); wait > 0 {
				select {
				case <-ctx.Done():
				case <-time.After(wait):
				}
			}
		}
	}()
	return sp
}

func (a *app) cancelCommand() *cobra.Command {
	return &cobra.Command{
		Use:     "cancel CALL_ID",
		Short:   "Cancel a queued or running call",
		Example: `  $ hyper func cancel 218b7b10-e7f1-4c48-ac3c-66792f8ffc06`,
		Args:    exactArgs(1),
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			c, err := a.api()
			if err != nil {
				return err
			}
			if err := c.Calls().Cancel(a.ctx, args[0]); err != nil {
				return err
			}
			a.printf("%s\n", args[0])
			return nil
		}),
	}
}
