// Command probe is a test controller: for a ConfigMap key it reads the
// ConfigMap and acts on data.action: "patch" patches the ConfigMap,
// "secret" patches a Secret (which its manifest does not allow), "fail"
// returns an error, "panic" traps; it always asks for a requeue after
// 1234 ms.
package main

import (
	"errors"

	"github.com/tugboat-dev/tugboat/hostapi"
	"github.com/tugboat-dev/tugboat/sdk"
)

type probe struct{}

func (probe) Reconcile(req sdk.ReconcileRequest) (sdk.ReconcileResult, error) {
	res := sdk.ReconcileResult{RequeueAfterMillis: 1234}
	obj, err := sdk.Get("configmaps", req.Namespace, req.Name)
	if err != nil {
		return res, err
	}
	v, _ := obj.Get("data", "action")
	action, _ := v.String()
	switch action {
	case "patch":
		_, err = sdk.MergePatch("configmaps", req.Namespace, req.Name, "", []byte(`{"data":{"seen":"yes"}}`))
	case "secret":
		_, err = sdk.MergePatch("secrets", req.Namespace, req.Name, "", []byte(`{"data":{}}`))
	case "fail":
		err = errors.New("probe failed on purpose")
	case "panic":
		panic("probe panics on purpose")
	}
	return res, err
}

func init() {
	sdk.RegisterController(probe{}, sdk.Manifest{Name: "probe", Rules: []sdk.Rule{
		{Verbs: []string{"get", "list", "patch"}, Resources: []string{"configmaps"}},
	}}, sdk.ControllerSpec{Watches: []sdk.Watch{{Resource: "configmaps", Enqueue: hostapi.EnqueueSelf}}})
}

func main() {}
