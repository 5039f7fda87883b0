// Command default-resources is a mutating admission plugin that sets
// default resource requests and limits on every container and init
// container of Pods and pod templates that lack them:
//
//	settings: {"requests": {"cpu": "100m", "memory": "128Mi"},
//	           "limits":   {"memory": "512Mi"}}
//
// Build it with `make plugins` (bin/plugins/default-resources.wasm). The
// policy lives in package defaultresources so it can also be linked
// natively.
package main

import (
	"github.com/tugboat-dev/tugboat/plugins/admission/default-resources/defaultresources"
	"github.com/tugboat-dev/tugboat/sdk"
)

func init() { sdk.RegisterAdmission(defaultresources.New(), defaultresources.Manifest()) }

func main() {}
