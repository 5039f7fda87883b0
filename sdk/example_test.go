package sdk_test

import (
	"errors"
	"fmt"

	"github.com/tugboat-dev/tugboat/hostapi"
	"github.com/tugboat-dev/tugboat/sdk"
	"github.com/tugboat-dev/tugboat/sdk/rawjson"
)

// requireTeam is the plugin of docs/PLUGIN_GUIDE.md.
type requireTeam struct{ label string }

func (p *requireTeam) Configure(settings rawjson.Value) error {
	v, ok := settings.Get("label")
	if !ok {
		return errors.New(`settings: "label" is required`)
	}
	s, ok := v.String()
	if !ok || s == "" {
		return errors.New(`settings: "label" must be a non-empty string`)
	}
	p.label = s
	return nil
}

func (p *requireTeam) Admit(req *sdk.AdmissionRequest) (*sdk.AdmissionResponse, error) {
	if req.Operation == sdk.Delete {
		return sdk.Allowed(), nil
	}
	if _, ok := req.Object.Get("metadata", "labels", p.label); !ok {
		return sdk.Denied("missing required label " + p.label), nil
	}
	return sdk.Allowed(), nil
}

// A plugin's main package calls sdk.RegisterAdmission from init; natively,
// sdk.NewAdmission gives the same module to call directly.
func ExampleNewAdmission() {
	mod, err := sdk.NewAdmission(&requireTeam{}, sdk.Manifest{
		Name:  "require-team",
		Kinds: []string{sdk.KindValidatingAdmission},
	})
	if err != nil {
		panic(err)
	}
	msg, _ := mod.Call(hostapi.ExportConfigure, []byte(`{}`))
	fmt.Printf("configure {}: %s\n", msg)
	msg, _ = mod.Call(hostapi.ExportConfigure, []byte(`{"label": "team"}`))
	fmt.Printf("configure: %q\n", msg)
	out, _ := mod.Call(hostapi.ExportAdmit, []byte(`{"uid": "1", "operation": "CREATE",
		"object": {"metadata": {"name": "web", "labels": {"app": "web"}}}}`))
	fmt.Println(string(out))
	// Output:
	// configure {}: settings: "label" is required
	// configure: ""
	// {"uid":"1","allowed":false,"status":{"metadata":{},"message":"missing required label team","reason":"Forbidden","code":403}}
}

func ExamplePatch() {
	var p sdk.Patch
	p.AddString(sdk.Pointer("metadata", "labels", "app.kubernetes.io/managed-by"), "tugboat")
	p.Add(sdk.Pointer("spec", "template", "spec", "containers", "0", "resources"),
		[]byte(`{"requests":{"cpu":"100m"}}`))
	fmt.Println(string(p.Bytes()))
	// Output:
	// [{"op":"add","path":"/metadata/labels/app.kubernetes.io~1managed-by","value":"tugboat"},{"op":"add","path":"/spec/template/spec/containers/0/resources","value":{"requests":{"cpu":"100m"}}}]
}
