package cli

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/spf13/cobra"

	"github.com/hyperfunc/hyperfunc/api"
)

// generatedNameAttempts bounds the retries when a generated name is taken.
const generatedNameAttempts = 5

func (a *app) createCommand() *cobra.Command {
	var (
		name, size, timeout, entrypoint, workdir, user string
		env, envFiles, labels                          []string
		warm                                           int
	)
	cmd := &cobra.Command{
		Use:   "create [OPTIONS] IMAGE [COMMAND] [ARG...]",
		Short: "Create a function",
		Long: `Create a function from a Docker image and an optional command.

Options must come before IMAGE: everything after it is the command and its
arguments, passed as they are. Without --name a readable name is generated.
The answer carries the function's secret address, shown only once.`,
		Example: `  # Create a "HelloWorld" function
  $ hyper func create --name helloworld ubuntu echo HelloWorld
  helloworld is created with the address of ...

  # Create a "resizer" function: "-resize" goes to convert, not to hyper
  $ hyper func create --name resizer v4tech/imagemagick convert - -resize 50% fd:1

  # Size, timeout, environment and labels
  $ hyper func create --name job --size m1 --timeout 5m -e MODE=fast -l team=web alpine ./run.sh`,
		Args: minArgs(1),
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			spec := &api.FunctionSpec{
				Name:    name,
				Image:   args[0],
				Command: args[1:],
				Workdir: workdir,
				User:    user,
				Warm:    warm,
			}
			if err := validateWarm(warm); err != nil {
				return err
			}
			if name != "" {
				if err := validateName(name); err != nil {
					return err
				}
			}
			if changed(cmd.Flags(), "size") {
				if err := validateSize(size); err != nil {
					return err
				}
				spec.Size = size
			}
			if changed(cmd.Flags(), "timeout") {
				t, err := parseTimeout(timeout)
				if err != nil {
					return err
				}
				spec.Timeout = t
			}
			if entrypoint != "" {
				spec.Entrypoint = []string{entrypoint}
			}
			e, err := parseEnv(env, envFiles, a.env)
			if err != nil {
				return err
			}
			if len(e) > 0 {
				spec.Env = e
			}
			if spec.Labels, err = parseLabels(labels); err != nil {
				return err
			}

			c, err := a.api()
			if err != nil {
				return err
			}
			generated := name == ""
			var fn *api.Function
			for attempt := 1; ; attempt++ {
				if generated {
					spec.Name = randomName()
				}
				fn, err = c.Functions().Create(a.ctx, spec)
				if generated && api.StatusCode(err) == http.StatusConflict && attempt < generatedNameAttempts {
					continue
				}
				break
			}
			if err != nil {
				return err
			}
			a.printf("%s is created with the address of %s\n", fn.Name, fn.Address)
			return nil
		}),
	}
	cmd.Flags().SetInterspersed(false)
	f := cmd.Flags()
	f.StringVar(&name, "name", "", "function `NAME` (generated when absent)")
	f.StringVar(&size, "size", api.DefaultSize, "container `SIZE`: s1..s4, m1..m3, l1..l3")
	f.StringVar(&timeout, "timeout", "0", "run time limit: seconds or a `DURATION` like 5m; 0 means none")
	f.StringArrayVarP(&env, "env", "e", nil, "set an environment variable `KEY=VALUE` (repeatable)")
	f.StringArrayVar(&envFiles, "env-file", nil, "read environment variables from a `FILE` of KEY=VALUE lines")
	f.StringArrayVarP(&labels, "label", "l", nil, "set a label `KEY=VALUE` (repeatable)")
	f.StringVar(&entrypoint, "entrypoint", "", "run `COMMAND` instead of the image's ENTRYPOINT")
	f.StringVarP(&workdir, "workdir", "w", "", "working `DIR` inside the container")
	f.StringVarP(&user, "user", "u", "", "run the command as `USER` (uid[:gid] or a name the image knows; default nobody, \"root\" if the image needs it)")
	f.IntVar(&warm, "warm", 0, "keep `N` pre-started sandboxes for its calls (each serves one call), 0 to "+fmt.Sprint(api.MaxWarm))
	a.registerSizeCompletion(cmd)
	return cmd
}

func (a *app) updateCommand() *cobra.Command {
	var (
		size, timeout, user string
		env, envFiles       []string
		refresh             bool
		warm                int
	)
	cmd := &cobra.Command{
		Use:   "update [OPTIONS] NAME",
		Short: "Update a function",
		Long: `Update a function's size, timeout or environment, or rotate its secret
address with --refresh. Environment variables are merged into the function's.`,
		Example: `  $ hyper func update --size m1 --timeout 10m resizer
  $ hyper func update -e QUALITY=80 resizer
  $ hyper func update --warm 2 resizer
  $ hyper func update --refresh resizer
  resizer is updated with the address of ...`,
		Args:              exactArgs(1),
		ValidArgsFunction: a.completeFunctionNames(1),
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			u := &api.FunctionUpdate{Refresh: refresh}
			if changed(cmd.Flags(), "size") {
				if err := validateSize(size); err != nil {
					return err
				}
				u.Size = &size
			}
			if changed(cmd.Flags(), "timeout") {
				t, err := parseTimeout(timeout)
				if err != nil {
					return err
				}
				u.Timeout = &t
			}
			if changed(cmd.Flags(), "user") {
				u.User = &user
			}
			if changed(cmd.Flags(), "warm") {
				if err := validateWarm(warm); err != nil {
					return err
				}
				u.Warm = &warm
			}
			e, err := parseEnv(env, envFiles, a.env)
			if err != nil {
				return err
			}
			if len(e) > 0 {
				u.Env = e
			}
			if u.Size == nil && u.Timeout == nil && u.Env == nil && u.User == nil && u.Warm == nil && !u.Refresh {
				return usagef("nothing to update: give --size, --timeout, --user, --warm, --env, --env-file or --refresh")
			}
			c, err := a.api()
			if err != nil {
				return err
			}
			fn, err := c.Functions().Update(a.ctx, args[0], u)
			if err != nil {
				return err
			}
			if refresh {
				a.printf("%s is updated with the address of %s\n", fn.Name, fn.Address)
			} else {
				a.printf("%s is updated\n", fn.Name)
			}
			return nil
		}),
	}
	f := cmd.Flags()
	f.StringVar(&size, "size", "", "container `SIZE`: s1..s4, m1..m3, l1..l3")
	f.StringVar(&timeout, "timeout", "", "run time limit: seconds or a `DURATION` like 5m; 0 means none")
	f.StringArrayVarP(&env, "env", "e", nil, "set an environment variable `KEY=VALUE` (repeatable)")
	f.StringArrayVar(&envFiles, "env-file", nil, "read environment variables from a `FILE` of KEY=VALUE lines")
	f.StringVarP(&user, "user", "u", "", "run the command as `USER` (\"\" for nobody, \"root\", uid[:gid])")
	f.IntVar(&warm, "warm", 0, "keep `N` pre-started sandboxes for its calls, 0 to "+fmt.Sprint(api.MaxWarm))
	f.BoolVar(&refresh, "refresh", false, "rotate the secret address and print the new one")
	a.registerSizeCompletion(cmd)
	return cmd
}

func validateWarm(n int) error {
	if n < 0 || n > api.MaxWarm {
		return usagef("invalid --warm %d: 0 to %d", n, api.MaxWarm)
	}
	return nil
}

func (a *app) registerSizeCompletion(cmd *cobra.Command) {
	_ = cmd.RegisterFlagCompletionFunc("size", func(_ *cobra.Command, _ []string, toComplete string) ([]string, cobra.ShellCompDirective) {
		var out []string
		for _, n := range sizeNames() {
			if strings.HasPrefix(n, toComplete) {
				out = append(out, n)
			}
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	})
}

func (a *app) printf(format string, args ...any) {
	fmt.Fprintf(a.stdout, format, args...)
}
