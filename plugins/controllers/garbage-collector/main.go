// Command garbage-collector is the garbage collector plugin (the policy
// lives in package gc).
package main

import (
	"github.com/tugboat-dev/tugboat/plugins/controllers/garbage-collector/gc"
	"github.com/tugboat-dev/tugboat/sdk"
)

func init() {
	sdk.RegisterController(gc.New(), gc.Manifest(), gc.Spec())
}

func main() {}
