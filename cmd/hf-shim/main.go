// Command hf-shim is the entrypoint of every hyperfunc function container.
// It reads the call envelope, runs the user's command with the envelope's
// stdin and env, keeps its stdout (capped) in the result dir and writes
// result.json there; see package shim for the exit codes.
//
//	hf-shim -envelope /local/payload   (or HF_ENVELOPE=/local/payload hf-shim)
//	hf-shim -wait -envelope FILE       (warm: wait for FILE to appear, then run it)
//	hf-shim -wait -ready R -envelope F (warm on Nomad: create R once SIGUSR1 is caught)
//	hf-shim -as UID:GID ...            (run the command as UID:GID; as PID 1 and root,
//	                                    end every other process after it and print the
//	                                    seal on stdout: package shim, seal.go)
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/hyperfunc/hyperfunc/shim"
)

func main() {
	// Catch the signals to forward before anything can start a child.
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGQUIT)
	// SIGUSR1 is a warm sandbox's doorbell on Nomad (the envelope template's
	// change_signal). Caught from the start, it never kills the shim (its
	// default action) nor reaches the command.
	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)

	flags := flag.NewFlagSet("hf-shim", flag.ContinueOnError)
	envelope := flags.String("envelope", os.Getenv("HF_ENVELOPE"), "path of the call envelope (default $HF_ENVELOPE)")
	wait := flags.Bool("wait", false, "wait for the envelope file to appear (a pre-started, warm sandbox)")
	ready := flags.String("ready", "", "with -wait: create this file once the doorbells are set up (the agent hands no call before)")
	as := flags.String("as", "", "run the command as numeric UID:GID (the shim runs as root)")
	if err := flags.Parse(os.Args[1:]); err != nil || *envelope == "" || flags.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "usage: hf-shim -envelope FILE (or HF_ENVELOPE=FILE)")
		os.Exit(shim.ExitShimError)
	}

	if *wait {
		if *ready != "" {
			// The Nomad executor claims a sandbox only after it sees this
			// file: a SIGUSR1 before the handler was set would kill the
			// shim with the call handed over.
			f, err := os.OpenFile(*ready, os.O_CREATE|os.O_WRONLY, 0o644)
			if err != nil {
				fmt.Fprintln(os.Stderr, "hf-shim: ready file:", err)
				os.Exit(shim.ExitShimError)
			}
			_ = f.Close()
		}
		// The doorbells are stdin (local) and SIGUSR1 (Nomad); the command
		// never gets stdin (its stdin is the envelope's).
		if err := shim.WaitFor(*envelope, shim.WaitPoll, os.Stdin, usr1, sigs); err != nil {
			fmt.Fprintln(os.Stderr, "hf-shim:", err)
			os.Exit(shim.ExitShimError)
		}
	}
	r := &shim.Runner{Signals: sigs, Reap: os.Getpid() == 1}
	if *as != "" {
		cred, err := shim.ParseUser(*as)
		if err != nil {
			fmt.Fprintln(os.Stderr, "hf-shim:", err)
			os.Exit(shim.ExitShimError)
		}
		r.Credential = cred
		// Docker set root's HOME (the container runs as root); the
		// command gets its own user's, as Docker would have given it.
		home := shim.ForUser("", cred)
		if h, ok := os.LookupEnv("HOME"); !ok || h == "/root" {
			env := []string{"HOME=" + home}
			for _, kv := range os.Environ() {
				if !strings.HasPrefix(kv, "HOME=") {
					env = append(env, kv)
				}
			}
			r.BaseEnv = env
		}
		// Only PID 1 reaches every process with kill(-1), and only root
		// (CAP_KILL) kills another uid's; elsewhere there is no seal.
		if os.Getpid() == 1 && os.Getuid() == 0 && cred.Uid != 0 {
			r.EndOthers, r.Seal = shim.EndAll, os.Stdout
		}
	}
	os.Exit(r.RunFile(*envelope))
}
