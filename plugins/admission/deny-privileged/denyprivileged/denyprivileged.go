// Package denyprivileged is the policy of the deny-privileged admission
// plugin. For Pods and the pod templates of workload kinds it denies, unless
// allowed by settings:
//
//   - a container, init container or ephemeral container with
//     securityContext.privileged: true (allowPrivileged),
//   - one with securityContext.allowPrivilegeEscalation: true
//     (allowPrivilegeEscalation),
//   - hostNetwork, hostPID or hostIPC set to true (allowHostNetwork,
//     allowHostPID, allowHostIPC).
//
// Namespaces in exemptNamespaces are not checked. An update that leaves the
// pod spec unchanged is allowed, so objects created before the policy can
// still be relabelled or scaled.
package denyprivileged

import (
	"bytes"
	"errors"
	"strconv"
	"strings"

	"github.com/tugboat-dev/tugboat/sdk"
	"github.com/tugboat-dev/tugboat/sdk/podspec"
	"github.com/tugboat-dev/tugboat/sdk/rawjson"
)

// Name is the plugin's name in its manifest.
const Name = "deny-privileged"

// Manifest returns the plugin's manifest: validating admission, no host
// capabilities.
func Manifest() sdk.Manifest {
	return sdk.Manifest{Name: Name, Kinds: []string{sdk.KindValidatingAdmission}}
}

// Settings are the plugin's settings; the zero value denies everything the
// plugin checks.
type Settings struct {
	AllowPrivileged          bool
	AllowPrivilegeEscalation bool
	AllowHostNetwork         bool
	AllowHostPID             bool
	AllowHostIPC             bool
	ExemptNamespaces         []string
}

// Plugin enforces Settings. It is usable unconfigured (deny everything);
// safe for concurrent use once configured.
type Plugin struct {
	s Settings
}

var _ interface {
	sdk.Admitter
	sdk.Configurer
} = (*Plugin)(nil)

// New returns a plugin with the default (strictest) settings.
func New() *Plugin { return &Plugin{} }

// Configure reads the settings object; every field is optional.
func (p *Plugin) Configure(settings rawjson.Value) error {
	var s Settings
	if settings.IsNull() {
		p.s = s
		return nil
	}
	bools := map[string]*bool{
		"allowPrivileged":          &s.AllowPrivileged,
		"allowPrivilegeEscalation": &s.AllowPrivilegeEscalation,
		"allowHostNetwork":         &s.AllowHostNetwork,
		"allowHostPID":             &s.AllowHostPID,
		"allowHostIPC":             &s.AllowHostIPC,
	}
	var bad error
	err := settings.EachMember(func(key []byte, val rawjson.Value) bool {
		name := string(key)
		if dst, ok := bools[name]; ok {
			if *dst, ok = val.Bool(); !ok {
				bad = errors.New("settings: " + name + " must be true or false")
			}
			return bad == nil
		}
		if name != "exemptNamespaces" {
			bad = errors.New("settings: unknown field " + strconv.Quote(name))
			return false
		}
		if val.Kind() != rawjson.Array {
			bad = errors.New("settings: exemptNamespaces must be a list of strings")
			return false
		}
		_ = val.EachElem(func(i int, e rawjson.Value) bool {
			ns, ok := e.String()
			if !ok || ns == "" {
				bad = errors.New("settings: exemptNamespaces[" + strconv.Itoa(i) + "] must be a non-empty string")
				return false
			}
			s.ExemptNamespaces = append(s.ExemptNamespaces, ns)
			return true
		})
		return bad == nil
	})
	if bad != nil {
		return bad
	}
	if err != nil {
		return errors.New("settings: must be a JSON object")
	}
	p.s = s
	return nil
}

// Admit checks creates and updates of objects that hold a pod spec.
func (p *Plugin) Admit(req *sdk.AdmissionRequest) (*sdk.AdmissionResponse, error) {
	if req.Operation != sdk.Create && req.Operation != sdk.Update || req.Object.IsNull() {
		return sdk.Allowed(), nil
	}
	if req.SubResource != "" && req.SubResource != "ephemeralcontainers" {
		return sdk.Allowed(), nil
	}
	for _, ns := range p.s.ExemptNamespaces {
		if ns == req.Namespace {
			return sdk.Allowed(), nil
		}
	}
	spec, _, ok := podspec.Find(req.Kind.Group, req.Kind.Kind, req.Object)
	if !ok {
		return sdk.Allowed(), nil
	}
	if req.Operation == sdk.Update {
		if old, _, ok := podspec.Find(req.Kind.Group, req.Kind.Kind, req.OldObject); ok && bytes.Equal(old, spec) {
			return sdk.Allowed(), nil
		}
	}
	if v := p.violations(spec); len(v) > 0 {
		return sdk.Denied(strings.Join(v, "; ")), nil
	}
	return sdk.Allowed(), nil
}

// violations lists what spec does that the settings do not allow.
func (p *Plugin) violations(spec rawjson.Value) []string {
	var out []string
	for _, h := range [...]struct {
		field   string
		allowed bool
	}{{"hostNetwork", p.s.AllowHostNetwork}, {"hostPID", p.s.AllowHostPID}, {"hostIPC", p.s.AllowHostIPC}} {
		if !h.allowed && isTrue(spec, h.field) {
			out = append(out, h.field+" is not allowed")
		}
	}
	podspec.EachContainer(spec, nil, func(c podspec.Container) bool {
		sc, ok := c.Value.Get("securityContext")
		if !ok {
			return true
		}
		if !p.s.AllowPrivileged && isTrue(sc, "privileged") {
			out = append(out, describe(c)+" must not be privileged")
		}
		if !p.s.AllowPrivilegeEscalation && isTrue(sc, "allowPrivilegeEscalation") {
			out = append(out, describe(c)+" must not allow privilege escalation")
		}
		return true
	})
	return out
}

func isTrue(obj rawjson.Value, field string) bool {
	v, ok := obj.Get(field)
	if !ok {
		return false
	}
	b, _ := v.Bool()
	return b
}

func describe(c podspec.Container) string {
	kind := "container"
	switch c.Field {
	case "initContainers":
		kind = "init container"
	case "ephemeralContainers":
		kind = "ephemeral container"
	}
	return kind + " " + strconv.Quote(c.Name)
}
