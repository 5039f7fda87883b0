package controller

import (
	"fmt"
	"slices"
	"strings"

	"k8s.io/client-go/discovery"
	"k8s.io/client-go/rest"

	"github.com/tugboat-dev/tugboat/kernel/errdefs"
)

// resourceInfo describes one API resource as plugins name it
// ("deployments.apps", "pods").
type resourceInfo struct {
	name       string // plural.group, or plural for the core group
	group      string
	version    string
	plural     string
	kind       string
	namespaced bool
	// watchable: the server serves watch (metrics.k8s.io does not);
	// only watchable resources are cached.
	watchable bool
}

func (r *resourceInfo) apiVersion() string {
	if r.group == "" {
		return r.version
	}
	return r.group + "/" + r.version
}

// path returns the REST path of a collection (name "") or object, with an
// optional subresource.
func (r *resourceInfo) path(namespace, name, subresource string) string {
	var b strings.Builder
	if r.group == "" {
		b.WriteString("/api/" + r.version)
	} else {
		b.WriteString("/apis/" + r.group + "/" + r.version)
	}
	if r.namespaced && namespace != "" {
		b.WriteString("/namespaces/" + namespace)
	}
	b.WriteString("/" + r.plural)
	if name != "" {
		b.WriteString("/" + name)
		if subresource != "" {
			b.WriteString("/" + subresource)
		}
	}
	return b.String()
}

// resources maps plugin resource names and group/kinds to resourceInfo.
type resources struct {
	byName map[string]*resourceInfo
	byKind map[string]*resourceInfo // "group/Kind"
}

// discover reads the server's preferred resources.
func discover(cfg *rest.Config) (*resources, error) {
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("discovery client: %w", err)
	}
	lists, err := dc.ServerPreferredResources()
	if err != nil && len(lists) == 0 {
		return nil, fmt.Errorf("discover resources: %w: %w", errdefs.ErrUnavailable, err)
	}
	rs := &resources{byName: make(map[string]*resourceInfo), byKind: make(map[string]*resourceInfo)}
	for _, l := range lists {
		group, version, _ := strings.Cut(l.GroupVersion, "/")
		if version == "" {
			group, version = "", group
		}
		for _, ar := range l.APIResources {
			if strings.Contains(ar.Name, "/") {
				continue
			}
			info := &resourceInfo{group: group, version: version, plural: ar.Name, kind: ar.Kind, namespaced: ar.Namespaced,
				watchable: slices.Contains(ar.Verbs, "watch")}
			info.name = ar.Name
			if group != "" {
				info.name += "." + group
			}
			rs.byName[info.name] = info
			rs.byKind[group+"/"+ar.Kind] = info
		}
	}
	return rs, nil
}

// lookup returns the named resource or ErrInvalid.
func (rs *resources) lookup(name string) (*resourceInfo, error) {
	if info := rs.byName[name]; info != nil {
		return info, nil
	}
	return nil, fmt.Errorf("unknown resource %q: %w", name, errdefs.ErrInvalid)
}

// forOwner returns the resource of an owner reference, or nil.
func (rs *resources) forOwner(apiVersion, kind string) *resourceInfo {
	group, _, found := strings.Cut(apiVersion, "/")
	if !found {
		group = ""
	}
	return rs.byKind[group+"/"+kind]
}
