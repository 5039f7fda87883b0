// Command endpoints is the Endpoints and EndpointSlice controller plugin
// (the policy lives in package endpoints).
package main

import (
	"github.com/tugboat-dev/tugboat/plugins/controllers/endpoints/endpoints"
	"github.com/tugboat-dev/tugboat/sdk"
)

func init() {
	sdk.RegisterController(endpoints.New(), endpoints.Manifest(), endpoints.Spec())
}

func main() {}
