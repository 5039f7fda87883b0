// Command namespace is the namespace controller plugin (the policy lives
// in package namespace).
package main

import (
	"github.com/tugboat-dev/tugboat/plugins/controllers/namespace/namespace"
	"github.com/tugboat-dev/tugboat/sdk"
)

func init() {
	sdk.RegisterController(namespace.New(), namespace.Manifest(), namespace.Spec())
}

func main() {}
