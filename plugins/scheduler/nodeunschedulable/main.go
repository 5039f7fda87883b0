// Command nodeunschedulable is the NodeUnschedulable scheduler filter
// (policy in package nodeunschedulable). Build it with `make plugins`
// (bin/plugins/nodeunschedulable.wasm).
package main

import (
	"github.com/tugboat-dev/tugboat/plugins/scheduler/nodeunschedulable/nodeunschedulable"
	sched "github.com/tugboat-dev/tugboat/sdk/scheduler"
)

func init() { sched.Register(nodeunschedulable.New(), nodeunschedulable.Manifest()) }

func main() {}
