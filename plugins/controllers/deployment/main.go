// Command deployment is the Deployment controller plugin (the policy lives
// in package deployment).
package main

import (
	"github.com/tugboat-dev/tugboat/plugins/controllers/deployment/deployment"
	"github.com/tugboat-dev/tugboat/sdk"
)

func init() {
	sdk.RegisterController(deployment.New(), deployment.Manifest(), deployment.Spec())
}

func main() {}
