// Package defaultresources is the policy of the default-resources admission
// plugin: on create (and, for pod templates, update) it adds the configured
// default requests and limits to every container and init container that
// lacks them, through a JSON patch. A default never contradicts what the
// container already sets: a missing request is capped at the container's
// limit for that resource, and a missing limit is raised to its request.
package defaultresources

import (
	"errors"
	"slices"
	"strconv"

	"github.com/tugboat-dev/tugboat/sdk"
	"github.com/tugboat-dev/tugboat/sdk/podspec"
	"github.com/tugboat-dev/tugboat/sdk/rawjson"
)

// Name is the plugin's name in its manifest.
const Name = "default-resources"

// Manifest returns the plugin's manifest: mutating admission, no host
// capabilities.
func Manifest() sdk.Manifest {
	return sdk.Manifest{Name: Name, Kinds: []string{sdk.KindMutatingAdmission}}
}

// resource is one default: a resource name and its quantity.
type resource struct {
	name  string
	value string
	num   float64
}

// Plugin sets default resources. Configure it before use; after that it is
// safe for concurrent use.
type Plugin struct {
	requests []resource // sorted by name
	limits   []resource // sorted by name
}

var _ interface {
	sdk.Admitter
	sdk.Configurer
} = (*Plugin)(nil)

// New returns an unconfigured plugin.
func New() *Plugin { return &Plugin{} }

// Configure reads {"requests": {name: quantity}, "limits": {...}}; at least
// one default is required, quantities must parse and no default request may
// exceed the default limit of the same resource.
func (p *Plugin) Configure(settings rawjson.Value) error {
	if settings.IsNull() {
		return errors.New(`settings: "requests" or "limits" is required`)
	}
	var requests, limits []resource
	var bad error
	err := settings.EachMember(func(key []byte, val rawjson.Value) bool {
		switch string(key) {
		case "requests":
			requests, bad = parseResources("requests", val)
		case "limits":
			limits, bad = parseResources("limits", val)
		default:
			bad = errors.New("settings: unknown field " + strconv.Quote(string(key)))
		}
		return bad == nil
	})
	switch {
	case bad != nil:
		return bad
	case err != nil:
		return errors.New("settings: must be a JSON object")
	case len(requests) == 0 && len(limits) == 0:
		return errors.New(`settings: "requests" or "limits" must name at least one resource`)
	}
	for _, r := range requests {
		if l, ok := find(limits, r.name); ok && r.num > l.num {
			return errors.New("settings: default request " + r.name + "=" + r.value + " exceeds default limit " + l.value)
		}
	}
	p.requests, p.limits = requests, limits
	return nil
}

func parseResources(field string, v rawjson.Value) ([]resource, error) {
	if v.IsNull() {
		return nil, nil
	}
	var out []resource
	var bad error
	err := v.EachMember(func(key []byte, val rawjson.Value) bool {
		name := string(key)
		s, ok := val.String()
		if !ok {
			bad = errors.New("settings: " + field + "." + name + " must be a quantity string")
			return false
		}
		n, err := parseQuantity(s)
		switch {
		case name == "":
			bad = errors.New("settings: " + field + " has an empty resource name")
		case err != nil:
			bad = errors.New("settings: " + field + "." + name + ": " + err.Error())
		case n < 0:
			bad = errors.New("settings: " + field + "." + name + " must not be negative")
		default:
			out = append(out, resource{name: name, value: s, num: n})
		}
		return bad == nil
	})
	if bad != nil {
		return nil, bad
	}
	if err != nil {
		return nil, errors.New("settings: " + field + " must be an object of resource name to quantity")
	}
	slices.SortFunc(out, func(a, b resource) int {
		if a.name < b.name {
			return -1
		}
		if a.name > b.name {
			return 1
		}
		return 0
	})
	return out, nil
}

func find(rs []resource, name string) (resource, bool) {
	for _, r := range rs {
		if r.name == name {
			return r, true
		}
	}
	return resource{}, false
}

// Admit patches the pod spec of Pods (on create) and of pod templates (on
// create and update).
func (p *Plugin) Admit(req *sdk.AdmissionRequest) (*sdk.AdmissionResponse, error) {
	if req.SubResource != "" || req.Object.IsNull() {
		return sdk.Allowed(), nil
	}
	switch req.Operation {
	case sdk.Create:
	case sdk.Update:
		if req.Kind.Group == "" && req.Kind.Kind == "Pod" {
			return sdk.Allowed(), nil // a pod's resources are immutable
		}
	default:
		return sdk.Allowed(), nil
	}
	spec, path, ok := podspec.Find(req.Kind.Group, req.Kind.Kind, req.Object)
	if !ok {
		return sdk.Allowed(), nil
	}
	if len(p.requests) == 0 && len(p.limits) == 0 {
		return nil, errors.New("plugin is not configured")
	}
	var patch sdk.Patch
	fields := []string{"initContainers", "containers"}
	podspec.EachContainer(spec, fields, func(c podspec.Container) bool {
		base := append(append(slices.Clip(path), c.Field), strconv.Itoa(c.Index), "resources")
		p.patchContainer(&patch, base, c.Value)
		return true
	})
	return sdk.Patched(&patch), nil
}

// patchContainer adds the missing defaults of one container, whose
// resources live at the JSON pointer tokens base.
func (p *Plugin) patchContainer(patch *sdk.Patch, base []string, c rawjson.Value) {
	res, hasRes := c.Get("resources")
	if hasRes && res.Kind() != rawjson.Object {
		hasRes = false // null
	}
	have := func(field string) (rawjson.Value, bool) {
		if !hasRes {
			return nil, false
		}
		v, ok := res.Get(field)
		return v, ok && v.Kind() == rawjson.Object
	}
	curReq, hasReq := have("requests")
	curLim, hasLim := have("limits")

	addReq := make(map[string]string)
	for _, d := range p.requests {
		if _, ok := curReq.Get(d.name); hasReq && ok {
			continue
		}
		v := d.value
		if l, ok := quantityOf(curLim, d.name); ok && l.num < d.num {
			v = l.value // never request more than the container's limit
		}
		addReq[d.name] = v
	}
	addLim := make(map[string]string)
	for _, d := range p.limits {
		if _, ok := curLim.Get(d.name); hasLim && ok {
			continue
		}
		v := d.value
		if r, ok := quantityOf(curReq, d.name); ok && r.num > d.num {
			v = r.value // never limit below the container's request
		}
		addLim[d.name] = v
	}
	if len(addReq) == 0 && len(addLim) == 0 {
		return
	}
	if !hasRes {
		obj := []byte{'{'}
		if len(addReq) > 0 {
			obj = append(obj, `"requests":`...)
			obj = append(obj, rawjson.StringMap(addReq)...)
		}
		if len(addLim) > 0 {
			if len(addReq) > 0 {
				obj = append(obj, ',')
			}
			obj = append(obj, `"limits":`...)
			obj = append(obj, rawjson.StringMap(addLim)...)
		}
		patch.Add(sdk.Pointer(base...), append(obj, '}'))
		return
	}
	addAll := func(field string, has bool, m map[string]string) {
		if len(m) == 0 {
			return
		}
		if !has {
			patch.Add(sdk.Pointer(append(slices.Clip(base), field)...), rawjson.StringMap(m))
			return
		}
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			patch.AddString(sdk.Pointer(append(slices.Clip(base), field, k)...), m[k])
		}
	}
	addAll("requests", hasReq, addReq)
	addAll("limits", hasLim, addLim)
}

// quantityOf returns the quantity set for name in a requests or limits
// object, if it parses.
func quantityOf(m rawjson.Value, name string) (resource, bool) {
	v, ok := m.Get(name)
	if !ok {
		return resource{}, false
	}
	s, ok := v.String()
	if !ok {
		return resource{}, false
	}
	n, err := parseQuantity(s)
	if err != nil {
		return resource{}, false
	}
	return resource{name: name, value: s, num: n}, true
}
