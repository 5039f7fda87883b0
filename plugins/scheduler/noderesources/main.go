// Command noderesources is the NodeResourcesFit scheduler filter and
// scorer (policy in package noderesources). Build it with `make plugins`
// (bin/plugins/noderesources.wasm).
package main

import (
	"github.com/tugboat-dev/tugboat/plugins/scheduler/noderesources/noderesources"
	sched "github.com/tugboat-dev/tugboat/sdk/scheduler"
)

func init() { sched.Register(noderesources.NewFit(), noderesources.FitManifest()) }

func main() {}
