package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"text/template"
	"time"

	"github.com/spf13/cobra"

	"github.com/hyperfunc/hyperfunc/api"
)

// commandWidth is the width of the COMMAND column of `ls` without --no-trunc.
const commandWidth = 20

func (a *app) lsCommand() *cobra.Command {
	var (
		filters        []string
		quiet, noTrunc bool
	)
	cmd := &cobra.Command{
		Use:     "ls [OPTIONS]",
		Aliases: []string{"list"},
		Short:   "List functions",
		Long: `List functions, newest first.

Filters (repeatable; names are OR'ed, labels AND'ed):
  name=PREFIX     functions whose name starts with PREFIX
  label=KEY       functions with the label KEY
  label=KEY=VALUE functions whose label KEY is VALUE`,
		Example: `  $ hyper func ls
  NAME         IMAGE     COMMAND             SIZE   CREATED
  helloworld   ubuntu    "echo HelloWorld"   s4     2 minutes ago

  $ hyper func ls -f label=team=web -q`,
		Args: exactArgs(0),
		RunE: runE(func(cmd *cobra.Command, _ []string) error {
			q, match, err := parseFilters(filters)
			if err != nil {
				return err
			}
			c, err := a.api()
			if err != nil {
				return err
			}
			fns, _, err := c.Functions().List(a.ctx, q, nil)
			if err != nil {
				return err
			}
			// Filter here too, so the output is right whatever the agent
			// supports.
			fns = slices.DeleteFunc(fns, func(f *api.Function) bool { return !match(f) })
			slices.SortStableFunc(fns, func(x, y *api.Function) int {
				if c := y.CreatedAt.Compare(x.CreatedAt); c != 0 {
					return c
				}
				return strings.Compare(x.Name, y.Name)
			})
			if quiet {
				for _, f := range fns {
					a.printf("%s\n", f.Name)
				}
				return nil
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 8, 3, ' ', 0)
			fmt.Fprintln(tw, "NAME\tIMAGE\tCOMMAND\tSIZE\tCREATED")
			now := a.now()
			for _, f := range fns {
				command := strings.Join(append(slices.Clone(f.Entrypoint), f.Command...), " ")
				if !noTrunc {
					command = truncate(command, commandWidth)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", f.Name, f.Image, strconv.Quote(command), f.Size, humanSince(now, f.CreatedAt))
			}
			return tw.Flush()
		}),
	}
	f := cmd.Flags()
	f.StringArrayVarP(&filters, "filter", "f", nil, "`FILTER`: name=PREFIX, label=KEY or label=KEY=VALUE (repeatable)")
	f.BoolVarP(&quiet, "quiet", "q", false, "only print names")
	f.BoolVar(&noTrunc, "no-trunc", false, "do not truncate the command")
	return cmd
}

// parseFilters turns -f entries into the query of the list request and a
// local predicate.
func parseFilters(entries []string) (url.Values, func(*api.Function) bool, error) {
	q := url.Values{}
	var names []string
	labels := map[string]*string{}
	for _, e := range entries {
		k, v, ok := strings.Cut(e, "=")
		switch {
		case !ok:
			return nil, nil, usagef("invalid filter %q: want name=PREFIX or label=KEY[=VALUE]", e)
		case k == "name":
			names = append(names, v)
			q.Add("name", v)
		case k == "label":
			lk, lv, hasValue := strings.Cut(v, "=")
			if lk == "" {
				return nil, nil, usagef("invalid filter %q: want label=KEY[=VALUE]", e)
			}
			if hasValue {
				labels[lk] = &lv
			} else {
				labels[lk] = nil
			}
			q.Add("label", v)
		default:
			return nil, nil, usagef("invalid filter %q: unknown filter %q (use name or label)", e, k)
		}
	}
	match := func(f *api.Function) bool {
		if len(names) > 0 && !slices.ContainsFunc(names, func(p string) bool { return strings.HasPrefix(f.Name, p) }) {
			return false
		}
		for k, want := range labels {
			got, ok := f.Labels[k]
			if !ok || (want != nil && got != *want) {
				return false
			}
		}
		return true
	}
	return q, match, nil
}

func truncate(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

// humanSince renders how long ago t was, as docker does ("2 minutes ago").
func humanSince(now, t time.Time) string {
	if t.IsZero() {
		return ""
	}
	d := now.Sub(t)
	if d < 0 {
		d = 0
	}
	return humanDuration(d) + " ago"
}

func humanDuration(d time.Duration) string {
	switch s := int(d.Seconds()); {
	case s < 1:
		return "Less than a second"
	case s == 1:
		return "1 second"
	case s < 60:
		return fmt.Sprintf("%d seconds", s)
	}
	switch m := int(d.Minutes()); {
	case m == 1:
		return "About a minute"
	case m < 60:
		return fmt.Sprintf("%d minutes", m)
	}
	switch h := int(d.Round(time.Hour).Hours()); {
	case h == 1:
		return "About an hour"
	case h < 48:
		return fmt.Sprintf("%d hours", h)
	case h < 24*7*2:
		return fmt.Sprintf("%d days", h/24)
	case h < 24*30*2:
		return fmt.Sprintf("%d weeks", h/24/7)
	case h < 24*365*2:
		return fmt.Sprintf("%d months", h/24/30)
	default:
		return fmt.Sprintf("%d years", h/24/365)
	}
}

func (a *app) inspectCommand() *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "inspect [OPTIONS] NAME [NAME...]",
		Short: "Show the details of functions",
		Long: `Show the details of functions as an indented JSON array, or format each one
with a Go template (-f). Template fields are those of the JSON, in Go spelling
({{.Name}}, {{.Image}}, {{.Resources.MemoryMB}}); the functions json, join,
upper and lower are available.`,
		Example: `  $ hyper func inspect helloworld
  $ hyper func inspect -f '{{.Image}} {{join .Command " "}}' helloworld
  ubuntu echo HelloWorld
  $ hyper func inspect -f '{{json .Env}}' resizer`,
		Args:              minArgs(1),
		ValidArgsFunction: a.completeFunctionNames(0),
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			var tmpl *template.Template
			if format != "" {
				t, err := template.New("format").Funcs(templateFuncs).Parse(format)
				if err != nil {
					return usagef("invalid --format template: %v", err)
				}
				tmpl = t
			}
			c, err := a.api()
			if err != nil {
				return err
			}
			fns := make([]*api.Function, 0, len(args))
			for _, name := range args {
				fn, _, err := c.Functions().Info(a.ctx, name, nil)
				if err != nil {
					return err
				}
				fns = append(fns, fn)
			}
			if tmpl == nil {
				b, err := json.MarshalIndent(fns, "", "    ")
				if err != nil {
					return err
				}
				a.printf("%s\n", b)
				return nil
			}
			for _, fn := range fns {
				var buf bytes.Buffer
				if err := tmpl.Execute(&buf, fn); err != nil {
					return fmt.Errorf("executing the template: %w", err)
				}
				a.printf("%s\n", buf.Bytes())
			}
			return nil
		}),
	}
	cmd.Flags().StringVarP(&format, "format", "f", "", "format each function with a Go `TEMPLATE`")
	return cmd
}

var templateFuncs = template.FuncMap{
	"json": func(v any) (string, error) {
		b, err := json.Marshal(v)
		return string(b), err
	},
	"join":  strings.Join,
	"upper": strings.ToUpper,
	"lower": strings.ToLower,
}

func (a *app) rmCommand() *cobra.Command {
	return &cobra.Command{
		Use:     "rm NAME [NAME...]",
		Aliases: []string{"remove"},
		Short:   "Remove functions",
		Long: `Remove functions. A function cannot be removed while one of its calls runs.
Each removed name is printed; on errors the others are still removed.`,
		Example:           `  $ hyper func rm helloworld`,
		Args:              minArgs(1),
		ValidArgsFunction: a.completeFunctionNames(0),
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			c, err := a.api()
			if err != nil {
				return err
			}
			failed := false
			for _, name := range args {
				if err := c.Functions().Delete(a.ctx, name); err != nil {
					if a.ctx.Err() != nil {
						return err
					}
					fmt.Fprintln(a.stderr, "Error: "+a.describe(err))
					failed = true
					continue
				}
				a.printf("%s\n", name)
			}
			if failed {
				return silentFailure(fmt.Errorf("some functions were not removed"))
			}
			return nil
		}),
	}
}

func (a *app) statusCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "status NAME",
		Short: "Count a function's calls per state",
		Example: `  $ hyper func status helloworld
  NAME         PENDING   RUNNING   FINISHED   FAILED   CANCELED
  helloworld   0         0         1          0        0`,
		Args:              exactArgs(1),
		ValidArgsFunction: a.completeFunctionNames(1),
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			c, err := a.api()
			if err != nil {
				return err
			}
			st, err := c.Functions().Status(a.ctx, args[0])
			if err != nil {
				return err
			}
			name := st.Function
			if name == "" {
				name = args[0]
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 8, 3, ' ', 0)
			fmt.Fprintln(tw, "NAME\tPENDING\tRUNNING\tFINISHED\tFAILED\tCANCELED")
			fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\n", name, st.Pending, st.Running, st.Finished, st.Failed, st.Canceled)
			return tw.Flush()
		}),
	}
}

func (a *app) pullCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "pull IMAGE",
		Short: "Pull an image ahead of the first call",
		Long: `Make hyperfunc pull an image, so the first call of a function built on it
does not wait for the download.`,
		Example: `  $ hyper pull ubuntu
  $ hyper pull v4tech/imagemagick`,
		Args: exactArgs(1),
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			c, err := a.api()
			if err != nil {
				return err
			}
			sp := startSpinner(a.stderr, isTerminal(a.stderr), a.now, "pulling "+args[0])
			err = c.Images().Pull(a.ctx, args[0])
			sp.Stop()
			if err != nil {
				return err
			}
			a.printf("Pulled %s\n", args[0])
			return nil
		}),
	}
}
