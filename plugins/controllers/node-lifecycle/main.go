// Command node-lifecycle is the node lifecycle controller plugin (the
// policy lives in package nodelifecycle).
package main

import (
	"github.com/tugboat-dev/tugboat/plugins/controllers/node-lifecycle/nodelifecycle"
	"github.com/tugboat-dev/tugboat/sdk"
)

func init() {
	sdk.RegisterController(nodelifecycle.New(), nodelifecycle.Manifest(), nodelifecycle.Spec())
}

func main() {}
