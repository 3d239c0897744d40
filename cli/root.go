package cli

import (
	"fmt"
	"runtime"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

func (a *app) rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "hyper",
		Short: "Run Docker images as functions on hyperfunc",
		Long: `hyper is the command line of hyperfunc, a Docker-centric functions platform.
A function is a Docker image plus a command; every call runs it in a fresh
container with the request body on STDIN and returns its STDOUT.

The agent address and token come from --addr and --token, then HYPER_ADDR and
HYPER_TOKEN, then the config file ($HYPER_CONFIG or ~/.hyper/config.json, with
{"address": "...", "token": "..."}), then ` + "http://127.0.0.1:4680.",
		Example: `  $ hyper pull ubuntu
  $ hyper func create --name helloworld ubuntu echo HelloWorld
  $ hyper func call helloworld
  $ hyper func get --wait <call id>`,
		SilenceErrors:     true,
		SilenceUsage:      true,
		Args:              noArgs,
		RunE:              helpRunE,
		CompletionOptions: cobra.CompletionOptions{HiddenDefaultCmd: false},
	}
	root.SetUsageTemplate(usageTemplate)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &usageError{msg: err.Error()} })
	pf := root.PersistentFlags()
	pf.StringVar(&a.addrFlag, "addr", "", "hyperfunc agent `ADDRESS` (env HYPER_ADDR)")
	pf.StringVar(&a.tokenFlag, "token", "", "API `TOKEN` (env HYPER_TOKEN)")

	fn := &cobra.Command{
		Use:     "func",
		Aliases: []string{"fn", "function"},
		Short:   "Manage and call functions",
		Long: `Manage and call functions. A function is a Docker image plus a command;
each call runs it in a new container, with the call's input on STDIN.`,
		Example: `  $ hyper pull ubuntu
  $ hyper func create --name helloworld ubuntu echo HelloWorld
  helloworld is created with the address of ...
  $ hyper func call helloworld
  CallId: 218b7b10-e7f1-4c48-ac3c-66792f8ffc06
  $ hyper func logs helloworld
  $ hyper func get --wait 218b7b10-e7f1-4c48-ac3c-66792f8ffc06
  HelloWorld
  $ hyper func rm helloworld`,
		Args: noArgs,
		RunE: helpRunE,
	}
	fn.AddCommand(
		a.createCommand(),
		a.updateCommand(),
		a.lsCommand(),
		a.rmCommand(),
		a.inspectCommand(),
		a.callCommand(),
		a.getCommand(),
		a.logsCommand(),
		a.statusCommand(),
		a.cancelCommand(),
	)
	root.AddCommand(fn, a.pullCommand(), a.versionCommand())
	for _, c := range append([]*cobra.Command{root, fn}, fn.Commands()...) {
		c.DisableFlagsInUseLine = true
	}
	return root
}

// usageTemplate is cobra's, except that command groups (runnable only to
// reject unknown subcommands) show just "hyper func [command]".
const usageTemplate = `Usage:{{if and .Runnable (not .HasAvailableSubCommands)}}
  {{.UseLine}}{{end}}{{if .HasAvailableSubCommands}}
  {{.CommandPath}} [command]{{end}}{{if gt (len .Aliases) 0}}

Aliases:
  {{.NameAndAliases}}{{end}}{{if .HasExample}}

Examples:
{{.Example}}{{end}}{{if .HasAvailableSubCommands}}{{$cmds := .Commands}}{{if eq (len .Groups) 0}}

Available Commands:{{range $cmds}}{{if (or .IsAvailableCommand (eq .Name "help"))}}
  {{rpad .Name .NamePadding }} {{.Short}}{{end}}{{end}}{{else}}{{range $group := .Groups}}

{{.Title}}{{range $cmds}}{{if (and (eq .GroupID $group.ID) (or .IsAvailableCommand (eq .Name "help")))}}
  {{rpad .Name .NamePadding }} {{.Short}}{{end}}{{end}}{{end}}{{if not .AllChildCommandsHaveGroup}}

Additional Commands:{{range $cmds}}{{if (and (eq .GroupID "") (or .IsAvailableCommand (eq .Name "help")))}}
  {{rpad .Name .NamePadding }} {{.Short}}{{end}}{{end}}{{end}}{{end}}{{end}}{{if .HasAvailableLocalFlags}}

Flags:
{{.LocalFlags.FlagUsages | trimTrailingWhitespaces}}{{end}}{{if .HasAvailableInheritedFlags}}

Global Flags:
{{.InheritedFlags.FlagUsages | trimTrailingWhitespaces}}{{end}}{{if .HasHelpSubCommands}}

Additional help topics:{{range .Commands}}{{if .IsAdditionalHelpTopicCommand}}
  {{rpad .CommandPath .CommandPathPadding}} {{.Short}}{{end}}{{end}}{{end}}{{if .HasAvailableSubCommands}}

Use "{{.CommandPath}} [command] --help" for more information about a command.{{end}}
`

func helpRunE(cmd *cobra.Command, _ []string) error { return cmd.Help() }

// noArgs rejects positional arguments of a command group: they are unknown
// subcommands.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usagef("unknown command %q for %q", args[0], cmd.CommandPath())
	}
	return nil
}

func plural(n int) string {
	if n == 1 {
		return "argument"
	}
	return "arguments"
}

func exactArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n && n == 0 {
			return usagef("%q accepts no arguments.", cmd.CommandPath())
		}
		if len(args) != n {
			return usagef("%q requires exactly %d %s.", cmd.CommandPath(), n, plural(n))
		}
		return nil
	}
}

func minArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) < n {
			return usagef("%q requires at least %d %s.", cmd.CommandPath(), n, plural(n))
		}
		return nil
	}
}

// completeFunctionNames completes function names from the agent; maxArgs
// bounds how many names the command takes (0 means any number).
func (a *app) completeFunctionNames(maxArgs int) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
		if maxArgs > 0 && len(args) >= maxArgs {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		c, err := a.api()
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp | cobra.ShellCompDirectiveError
		}
		fns, _, err := c.Functions().List(cmd.Context(), nil, nil)
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp | cobra.ShellCompDirectiveError
		}
		var out []string
		for _, f := range fns {
			if strings.HasPrefix(f.Name, toComplete) {
				out = append(out, f.Name)
			}
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	}
}

func (a *app) versionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version of the hyper CLI",
		Args:  exactArgs(0),
		RunE: runE(func(cmd *cobra.Command, _ []string) error {
			fmt.Fprintf(a.stdout, "hyper version %s (%s %s/%s)\n", Version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
			return nil
		}),
	}
}

// changed reports whether the user set the flag.
func changed(fs *pflag.FlagSet, name string) bool {
	f := fs.Lookup(name)
	return f != nil && f.Changed
}
