// Command statefulset is the StatefulSet controller plugin (the policy
// lives in package statefulset).
package main

import (
	"github.com/tugboat-dev/tugboat/plugins/controllers/statefulset/statefulset"
	"github.com/tugboat-dev/tugboat/sdk"
)

func init() {
	sdk.RegisterController(statefulset.New(), statefulset.Manifest(), statefulset.Spec())
}

func main() {}
