// Package lookupplugin is a test plugin for sdk/plugintest: it exercises
// every host call and reports what it saw in its denial message, so one
// test can compare the native and Wasm paths.
package lookupplugin

import (
	"errors"
	"strconv"
	"strings"

	"github.com/tugboat-dev/tugboat/sdk"
	"github.com/tugboat-dev/tugboat/sdk/rawjson"
)

// Plugin is the test plugin.
type Plugin struct{}

// Admit reports what the host calls returned.
func (Plugin) Admit(req *sdk.AdmissionRequest) (*sdk.AdmissionResponse, error) {
	var out []string
	sdk.Log(sdk.LevelInfo, "admit "+req.Name)

	cm, err := sdk.Get("configmaps", req.Namespace, "settings")
	if err != nil {
		out = append(out, "get settings: "+err.Error())
	} else {
		v, _ := cm.Get("data", "mode")
		s, _ := v.String()
		out = append(out, "mode="+s)
	}
	if _, err := sdk.Get("configmaps", req.Namespace, "absent"); !errors.Is(err, sdk.ErrNotFound) {
		out = append(out, "get absent: "+errString(err))
	}
	if _, err := sdk.Get("secrets", req.Namespace, "s"); !errors.Is(err, sdk.ErrPermission) {
		out = append(out, "get secret: "+errString(err))
	}
	pods, err := sdk.List(sdk.ListRequest{Resource: "pods", Namespace: req.Namespace, LabelSelector: "app=web"})
	if err != nil {
		out = append(out, "list: "+err.Error())
	} else {
		var names []string
		for _, p := range pods {
			n, _ := p.Get("metadata", "name")
			s, _ := n.String()
			names = append(names, s)
		}
		out = append(out, "pods="+strings.Join(names, ","))
	}
	if _, err := sdk.Now(); !errors.Is(err, sdk.ErrPermission) {
		out = append(out, "now: "+errString(err))
	}
	if _, err := sdk.Write(sdk.WriteRequest{Verb: "create", Resource: "configmaps", Object: []byte(`{}`)}); !errors.Is(err, sdk.ErrPermission) {
		out = append(out, "write: "+errString(err))
	}
	if req.Name == "fail" {
		return nil, errors.New("lookup failed on purpose")
	}
	return sdk.Denied(strings.Join(out, "; ")), nil
}

func errString(err error) string {
	if err == nil {
		return "<nil>"
	}
	return err.Error()
}

// Configure accepts settings if they are an object with a numeric "n".
func (Plugin) Configure(settings rawjson.Value) error {
	if settings.IsNull() {
		return nil
	}
	n, ok := settings.Get("n")
	if _, isInt := n.Int(); !ok || !isInt {
		return errors.New("settings: n must be an integer, got " + strconv.Quote(string(n)))
	}
	return nil
}

// Manifest grants get and list on configmaps and pods.
func Manifest() sdk.Manifest {
	return sdk.Manifest{
		Name:  "lookup",
		Kinds: []string{sdk.KindValidatingAdmission},
		Rules: []sdk.Rule{{Verbs: []string{"get", "list"}, Resources: []string{"configmaps", "pods"}}},
	}
}
