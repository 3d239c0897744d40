package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"text/tabwriter"

	"github.com/hyperfunc/hyperfunc/api"
)

func operatorCommand(args []string, stdout, stderr io.Writer) int {
	if len(args) < 2 || args[0] != "raft" {
		fmt.Fprintln(stderr, "Usage: hyperfunc operator raft list-peers|remove-peer [-address ADDR] [-token TOKEN] [ID|ADDRESS]")
		return 2
	}
	fs := flag.NewFlagSet("operator raft", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("address", envOr("HYPER_ADDR", api.DefaultAddress), "agent HTTP address")
	token := fs.String("token", os.Getenv("HYPER_TOKEN"), "admin token")
	if err := fs.Parse(args[2:]); err != nil {
		return 2
	}
	client, err := api.NewClient(&api.Config{Address: *addr, Token: *token})
	if err != nil {
		fmt.Fprintln(stderr, "Error:", err)
		return 2
	}
	ctx := context.Background()
	switch args[1] {
	case "list-peers":
		peers, err := client.Operator().RaftPeers(ctx)
		if err != nil {
			fmt.Fprintf(stderr, "Error: listing peers at %s: %v\n", client.Address(), err)
			return 1
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "Node ID\tRaft Address\tHTTP Address\tState\tVoter")
		for _, p := range peers {
			state := "follower"
			if p.Leader {
				state = "leader"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%v\n", p.ID, p.Address, p.HTTPAddr, state, p.Voter)
		}
		tw.Flush()
		return 0
	case "remove-peer":
		if fs.NArg() != 1 {
			fmt.Fprintln(stderr, "Usage: hyperfunc operator raft remove-peer [-address ADDR] ID|RAFT-ADDRESS")
			return 2
		}
		if err := client.Operator().RemovePeer(ctx, fs.Arg(0)); err != nil {
			fmt.Fprintf(stderr, "Error: removing %s: %v\n", fs.Arg(0), err)
			return 1
		}
		fmt.Fprintf(stdout, "Removed peer %s\n", fs.Arg(0))
		return 0
	}
	fmt.Fprintf(stderr, "unknown raft subcommand %q\n", args[1])
	return 2
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}
