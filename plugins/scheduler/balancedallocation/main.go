// Command balancedallocation is the NodeResourcesBalancedAllocation
// scheduler scorer (policy in package noderesources). Build it with
// `make plugins` (bin/plugins/balancedallocation.wasm).
package main

import (
	"github.com/tugboat-dev/tugboat/plugins/scheduler/noderesources/noderesources"
	sched "github.com/tugboat-dev/tugboat/sdk/scheduler"
)

func init() { sched.Register(noderesources.NewBalanced(), noderesources.BalancedManifest()) }

func main() {}
