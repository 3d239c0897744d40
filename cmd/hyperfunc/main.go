// Command hyperfunc is the hyperfunc server agent and its operator tools:
//
//	hyperfunc agent -dev
//	hyperfunc agent -data-dir DIR -bootstrap-expect 3 -join ADDR,...
//	hyperfunc operator raft list-peers|remove-peer
package main

import (
	"fmt"
	"io"
	"os"
)

// Version is set at build time with -ldflags "-X main.Version=...".
var Version = "0.1.0-dev"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	switch args[0] {
	case "agent":
		return agentCommand(args[1:], stderr)
	case "operator":
		return operatorCommand(args[1:], stdout, stderr)
	case "version", "-version", "--version":
		fmt.Fprintf(stdout, "hyperfunc %s\n", Version)
		return 0
	case "-h", "-help", "--help", "help":
		usage(stdout)
		return 0
	}
	fmt.Fprintf(stderr, "unknown command %q\n", args[0])
	usage(stderr)
	return 2
}

func usage(w io.Writer) {
	fmt.Fprint(w, `Usage: hyperfunc <command> [options]

Commands:
  agent      Run a hyperfunc server (-dev for a single local node)
  operator   Cluster operations (raft list-peers, raft remove-peer)
  version    Print the version

Run 'hyperfunc agent -h' for the agent's options.
`)
}
