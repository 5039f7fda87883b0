// Command nodename is the NodeName scheduler filter (policy in package
// nodename). Build it with `make plugins` (bin/plugins/nodename.wasm).
package main

import (
	"github.com/tugboat-dev/tugboat/plugins/scheduler/nodename/nodename"
	sched "github.com/tugboat-dev/tugboat/sdk/scheduler"
)

func init() { sched.Register(nodename.New(), nodename.Manifest()) }

func main() {}
