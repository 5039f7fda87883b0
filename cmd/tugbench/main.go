// Command tugbench measures Tugboat against the components it replaces.
//
// Each subcommand is one benchmark with its own flags and prints a table
// followed by one machine-readable line starting with "RESULT":
//
//	tugbench store [flags]   Badger store vs embedded etcd (make bench-store)
//	tugbench api [flags]     tugboat server through client-go (make bench-api)
//	tugbench plugins [flags] Wasm plugin runtime vs native code (make bench-plugins)
//	tugbench network [flags] iptables proxy sync and cluster IP request rate (make bench-network)
//
// Run "tugbench <command> -h" for a command's flags.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/tugboat-dev/tugboat/kernel/errdefs"
)

// command is one benchmark; run receives the arguments after its name.
type command struct {
	name    string
	summary string
	run     func(args []string) error
}

var commands = []command{
	{name: "store", summary: "Badger store vs embedded etcd: create latency, throughput, watch fan-out", run: runStore},
	{name: "api", summary: "tugboat server through client-go: start time, idle RSS, creates/s, get/list latency", run: runAPI},
	{name: "plugins", summary: "Wasm plugins: admission latency vs native, cold start, instance cost, deadline overhead", run: runPlugins},
	{name: "scheduler", summary: "scheduler: pods/s on 5000 nodes (basic, anti-affinity, node affinity), Wasm vs native plugins", run: runScheduler},
	{name: "agent", summary: "node agent on the exec runtime: 100 pods creation->Running p50/p99, agent idle RSS and CPU", run: runAgentBench},
	{name: "controllers", summary: "controllers: 100 Deployments x 10 replicas on 100 sim nodes, creates -> all pods Running, pod startup p50/p99, server CPU", run: runControllers},
	{name: "network", summary: "iptables sync of 1000 services x 10 endpoints (full, one-endpoint change), cluster IP vs direct request rate, in netns", run: runNetwork},
}

func main() {
	if len(os.Args) < 2 {
		usage()
		os.Exit(2)
	}
	name := os.Args[1]
	switch name {
	case "-h", "-help", "--help", "help":
		usage()
		return
	}
	for _, c := range commands {
		if c.name != name {
			continue
		}
		err := c.run(os.Args[2:])
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "tugbench %s: %v\n", name, err)
			os.Exit(1)
		}
		return
	}
	fmt.Fprintf(os.Stderr, "tugbench: unknown command %q\n", name)
	usage()
	os.Exit(2)
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: tugbench <command> [flags]\n\ncommands:")
	for _, c := range commands {
		fmt.Fprintf(os.Stderr, "  %-10s %s\n", c.name, c.summary)
	}
}

// positiveInts parses a comma-separated list of positive integers given to
// flag -name.
func positiveInts(name, list string) ([]int, error) {
	var out []int
	for f := range strings.SplitSeq(list, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("-%s %q: want positive integers: %w", name, list, errdefs.ErrInvalid)
		}
		out = append(out, n)
	}
	return out, nil
}
