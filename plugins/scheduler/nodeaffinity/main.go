// Command nodeaffinity is the NodeAffinity scheduler plugin (filter and
// scorer): spec.nodeSelector and required/preferred node affinity, as in
// kube-scheduler. Settings (optional):
//
//	{"addedAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {...}}}
//
// Build it with `make plugins` (bin/plugins/nodeaffinity.wasm). The policy
// lives in package nodeaffinity so it can also be linked natively.
package main

import (
	"github.com/tugboat-dev/tugboat/plugins/scheduler/nodeaffinity/nodeaffinity"
	sched "github.com/tugboat-dev/tugboat/sdk/scheduler"
)

func init() { sched.Register(nodeaffinity.New(), nodeaffinity.Manifest()) }

func main() {}
