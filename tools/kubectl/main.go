// Command kubectl is the upstream kubectl, pinned to the k8s.io/kubectl
// version in this module's go.mod, so that Tugboat's tests and `make run`
// users drive the server with a real, known kubectl. Its main mirrors
// k8s.io/kubernetes/cmd/kubectl/kubectl.go.
package main

import (
	"k8s.io/component-base/cli"
	"k8s.io/kubectl/pkg/cmd"
	"k8s.io/kubectl/pkg/cmd/util"

	// Register the client auth plugins (exec, oidc) like upstream kubectl.
	_ "k8s.io/client-go/plugin/pkg/client/auth"
)

func main() {
	command := cmd.NewDefaultKubectlCommand()
	if err := cli.RunNoErrOutput(command); err != nil {
		// Print the error the way kubectl does and exit non-zero.
		util.CheckErr(err)
	}
}
