// Command trap is a test controller that panics on every reconcile (a
// trap in Wasm), for the test that a failing controller does not stop
// the others.
package main

import (
	"github.com/tugboat-dev/tugboat/hostapi"
	"github.com/tugboat-dev/tugboat/sdk"
)

type trap struct{}

func (trap) Reconcile(req sdk.ReconcileRequest) (sdk.ReconcileResult, error) {
	panic("trap controller: reconcile of " + req.Name)
}

func init() {
	sdk.RegisterController(trap{}, sdk.Manifest{Name: "trap", Rules: []sdk.Rule{{Verbs: []string{"get", "list"}, Resources: []string{"configmaps"}}}},
		sdk.ControllerSpec{Watches: []sdk.Watch{{Resource: "configmaps", Enqueue: hostapi.EnqueueSelf}}})
}

func main() {}
