// Command tainttoleration is the TaintToleration scheduler filter and
// scorer (policy in package tainttoleration). Build it with `make plugins`
// (bin/plugins/tainttoleration.wasm).
package main

import (
	"github.com/tugboat-dev/tugboat/plugins/scheduler/tainttoleration/tainttoleration"
	sched "github.com/tugboat-dev/tugboat/sdk/scheduler"
)

func init() { sched.Register(tainttoleration.New(), tainttoleration.Manifest()) }

func main() {}
