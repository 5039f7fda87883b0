// Package requirelabels is the policy of the require-labels admission
// plugin: objects of any kind must carry every configured label (any value,
// including empty). Deletes and subresource writes are allowed.
package requirelabels

import (
	"errors"
	"strconv"
	"strings"

	"github.com/tugboat-dev/tugboat/sdk"
	"github.com/tugboat-dev/tugboat/sdk/rawjson"
)

// Name is the plugin's name in its manifest.
const Name = "require-labels"

// Manifest returns the plugin's manifest: validating admission, no host
// capabilities.
func Manifest() sdk.Manifest {
	return sdk.Manifest{Name: Name, Kinds: []string{sdk.KindValidatingAdmission}}
}

// Plugin checks required labels. Configure it before use; after that it is
// safe for concurrent use.
type Plugin struct {
	labels []string
}

var _ interface {
	sdk.Admitter
	sdk.Configurer
} = (*Plugin)(nil)

// New returns an unconfigured plugin.
func New() *Plugin { return &Plugin{} }

// Configure reads {"labels": [...]}: a non-empty list of label keys.
func (p *Plugin) Configure(settings rawjson.Value) error {
	if settings.IsNull() {
		return errors.New(`settings: "labels" is required`)
	}
	var labels []string
	var bad error
	err := settings.EachMember(func(key []byte, val rawjson.Value) bool {
		switch string(key) {
		case "labels":
			labels, bad = parseLabels(val)
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
	case len(labels) == 0:
		return errors.New(`settings: "labels" must list at least one label`)
	}
	p.labels = labels
	return nil
}

func parseLabels(v rawjson.Value) ([]string, error) {
	if v.Kind() != rawjson.Array {
		return nil, errors.New(`settings: "labels" must be a list of strings`)
	}
	var labels []string
	var bad error
	_ = v.EachElem(func(i int, e rawjson.Value) bool {
		s, ok := e.String()
		switch {
		case !ok:
			bad = errors.New("settings: labels[" + strconv.Itoa(i) + "] must be a string")
		case !ValidLabelKey(s):
			bad = errors.New("settings: labels[" + strconv.Itoa(i) + "]: " + strconv.Quote(s) + " is not a valid label key")
		default:
			for _, l := range labels {
				if l == s {
					return true
				}
			}
			labels = append(labels, s)
		}
		return bad == nil
	})
	return labels, bad
}

// allowed is the response to every admitted request: the SDK never writes
// to a response, so one value serves all calls (an allocation saved per
// call, a few hundred ns in a Wasm guest).
var allowed = sdk.Allowed()

// Admit denies a create or update whose object lacks a required label.
func (p *Plugin) Admit(req *sdk.AdmissionRequest) (*sdk.AdmissionResponse, error) {
	if req.Operation == sdk.Delete || req.SubResource != "" || req.Object.IsNull() {
		return allowed, nil
	}
	if len(p.labels) == 0 {
		return nil, errors.New("plugin is not configured")
	}
	// From a binary request the host has extracted the labels: no JSON
	// scanning here.
	labels := req.ObjectLabels()
	var missing []string
	for _, l := range p.labels {
		if !labels.Has(l) {
			missing = append(missing, l)
		}
	}
	if len(missing) == 0 {
		return allowed, nil
	}
	return sdk.Denied("missing required label(s): " + strings.Join(missing, ", ")), nil
}

// ValidLabelKey reports whether s is a Kubernetes label key: an optional
// DNS subdomain prefix and "/", then a name of at most 63 characters of
// [A-Za-z0-9-_.] beginning and ending with an alphanumeric.
func ValidLabelKey(s string) bool {
	prefix, name, hasPrefix := strings.Cut(s, "/")
	if !hasPrefix {
		name, prefix = prefix, ""
	} else if !validSubdomain(prefix) {
		return false
	}
	if len(name) == 0 || len(name) > 63 || !isAlnum(name[0]) || !isAlnum(name[len(name)-1]) {
		return false
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; !isAlnum(c) && c != '-' && c != '_' && c != '.' {
			return false
		}
	}
	return true
}

func validSubdomain(s string) bool {
	if len(s) == 0 || len(s) > 253 {
		return false
	}
	for _, part := range strings.Split(s, ".") {
		if len(part) == 0 || len(part) > 63 || !isLowerAlnum(part[0]) || !isLowerAlnum(part[len(part)-1]) {
			return false
		}
		for i := 0; i < len(part); i++ {
			if c := part[i]; !isLowerAlnum(c) && c != '-' {
				return false
			}
		}
	}
	return true
}

func isAlnum(c byte) bool { return isLowerAlnum(c) || c >= 'A' && c <= 'Z' }

func isLowerAlnum(c byte) bool { return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' }
