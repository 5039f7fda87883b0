// Command deny-privileged is a validating admission plugin that denies
// Pods and pod templates with privileged containers, containers that allow
// privilege escalation, or host namespaces (hostNetwork, hostPID, hostIPC),
// unless its settings allow them:
//
//	settings: {"allowHostNetwork": false, "exemptNamespaces": ["kube-system"]}
//
// Build it with `make plugins` (bin/plugins/deny-privileged.wasm). The
// policy lives in package denyprivileged so it can also be linked natively.
package main

import (
	"github.com/tugboat-dev/tugboat/plugins/admission/deny-privileged/denyprivileged"
	"github.com/tugboat-dev/tugboat/sdk"
)

func init() { sdk.RegisterAdmission(denyprivileged.New(), denyprivileged.Manifest()) }

func main() {}
