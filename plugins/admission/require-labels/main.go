// Command require-labels is a validating admission plugin that denies
// objects missing any of the labels listed in its settings:
//
//	settings: {"labels": ["team", "app.kubernetes.io/name"]}
//
// Build it with `make plugins` (bin/plugins/require-labels.wasm). The policy
// lives in package requirelabels so it can also be linked natively.
package main

import (
	"github.com/tugboat-dev/tugboat/plugins/admission/require-labels/requirelabels"
	"github.com/tugboat-dev/tugboat/sdk"
)

func init() { sdk.RegisterAdmission(requirelabels.New(), requirelabels.Manifest()) }

func main() {}
