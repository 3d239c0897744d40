package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/hyperfunc/hyperfunc/api"
)

func (a *app) logsCommand() *cobra.Command {
	var (
		callID string
		follow bool
		tail   int
	)
	cmd := &cobra.Command{
		Use:   "logs [OPTIONS] NAME",
		Short: "Show the log of a function's calls",
		Long: `Show the log events of a function's calls, one per line:

  <time> [CALL] CallId: <id>, ShortStdin: <first bytes of stdin>
  <time> [PENDING] CallId: <id>
  <time> [RUNNING] CallId: <id>
  <time> [FINISHED] CallId: <id>, ShortStdout: ..., ShortStderr: ...
  <time> [FAILED] CallId: <id>, Message: ...

One event is one line: newlines, other control characters, bytes that are
not UTF-8 and backslashes in the quoted stdin, stdout and stderr are
escaped (\n, \x00, \\). Logs live in a capped cache per function: fetch
them regularly.`,
		Example: `  $ hyper func logs helloworld
  2017-03-16T15:05:58Z [CALL] CallId: 218b7b10-e7f1-4c48-ac3c-66792f8ffc06, ShortStdin:
  2017-03-16T15:05:58Z [PENDING] CallId: 218b7b10-e7f1-4c48-ac3c-66792f8ffc06
  2017-03-16T15:06:04Z [RUNNING] CallId: 218b7b10-e7f1-4c48-ac3c-66792f8ffc06
  2017-03-16T15:06:10Z [FINISHED] CallId: 218b7b10-e7f1-4c48-ac3c-66792f8ffc06, ShortStdout: HelloWorld\n, ShortStderr:

  # Follow the events of one call
  $ hyper func logs -f --callid 218b7b10-e7f1-4c48-ac3c-66792f8ffc06 helloworld`,
		Args:              exactArgs(1),
		ValidArgsFunction: a.completeFunctionNames(1),
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			if tail < 0 {
				return usagef("invalid --tail %d: must not be negative", tail)
			}
			c, err := a.api()
			if err != nil {
				return err
			}
			opts := &api.LogOptions{CallID: callID, Tail: tail, Follow: follow}
			err = c.Calls().Logs(a.ctx, args[0], opts, func(ev api.LogEvent) error {
				_, err := fmt.Fprintln(a.stdout, ev.Line())
				return err
			})
			if follow && a.ctx.Err() != nil {
				// Interrupting -f is the normal way out.
				return nil
			}
			return err
		}),
	}
	f := cmd.Flags()
	f.StringVar(&callID, "callid", "", "only the events of the call `ID`")
	f.BoolVarP(&follow, "follow", "f", false, "keep printing new events")
	f.IntVar(&tail, "tail", 0, "only the last `N` events (0 means all)")
	return cmd
}
