// Command daemonset is the DaemonSet controller plugin (the policy lives
// in package daemonset).
package main

import (
	"github.com/tugboat-dev/tugboat/plugins/controllers/daemonset/daemonset"
	"github.com/tugboat-dev/tugboat/sdk"
)

func init() {
	sdk.RegisterController(daemonset.New(), daemonset.Manifest(), daemonset.Spec())
}

func main() {}
