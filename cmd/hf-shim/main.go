// Command hf-shim is the entrypoint of every hyperfunc function container.
// It reads the call envelope, runs the user's command with the envelope's
// stdin and env, keeps its stdout (capped) in the result dir and writes
// result.json there; see package shim for the exit codes.
//
//	hf-shim -envelope /local/payload   (or HF_ENVELOPE=/local/payload hf-shim)
//	hf-shim -wait -envelope FILE       (warm: wait for FILE to appear, then run it)
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/hyperfunc/hyperfunc/shim"
)

func main() {
	// Catch the signals to forward before anything can start a child.
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGQUIT)

	flags := flag.NewFlagSet("hf-shim", flag.ContinueOnError)
	envelope := flags.String("envelope", os.Getenv("HF_ENVELOPE"), "path of the call envelope (default $HF_ENVELOPE)")
	wait := flags.Bool("wait", false, "wait for the envelope file to appear (a pre-started, warm sandbox)")
	if err := flags.Parse(os.Args[1:]); err != nil || *envelope == "" || flags.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "usage: hf-shim -envelope FILE (or HF_ENVELOPE=FILE)")
		os.Exit(shim.ExitShimError)
	}

	if *wait {
		// The doorbell is stdin; the command never gets it (its stdin is
		// the envelope's).
		if err := shim.WaitFor(*envelope, shim.WaitPoll, os.Stdin, sigs); err != nil {
			fmt.Fprintln(os.Stderr, "hf-shim:", err)
			os.Exit(shim.ExitShimError)
		}
	}
	r := &shim.Runner{Signals: sigs, Reap: os.Getpid() == 1}
	os.Exit(r.RunFile(*envelope))
}
