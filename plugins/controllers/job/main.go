// Command job is the Job controller plugin (the policy lives in package
// job).
package main

import (
	"github.com/tugboat-dev/tugboat/plugins/controllers/job/job"
	"github.com/tugboat-dev/tugboat/sdk"
)

func init() {
	sdk.RegisterController(job.New(), job.Manifest(), job.Spec())
}

func main() {}
