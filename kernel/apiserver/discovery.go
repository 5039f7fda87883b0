package apiserver

import (
	"encoding/json"
	"fmt"
	"net/http"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/munnerz/goautoneg"
	apidiscoveryv2 "k8s.io/api/apidiscovery/v2"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/version"
)

// aggregatedMediaType is the Content-Type of aggregated discovery; client-go
// recognises the aggregated format by it.
const aggregatedMediaType = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"

// serveDiscovery serves /api, /api/v1, /apis, /apis/<g> and /apis/<g>/<v>;
// it reports false for other paths.
func (s *Server) serveDiscovery(w http.ResponseWriter, r *http.Request) bool {
	parts := splitPath(r.URL.Path)
	switch {
	case len(parts) == 1 && parts[0] == "api":
		if wantsAggregated(r) {
			writeAggregated(w, s.aggregated(true))
			return true
		}
		writeJSON(w, http.StatusOK, &metav1.APIVersions{
			TypeMeta: metav1.TypeMeta{Kind: "APIVersions"},
			Versions: []string{"v1"},
			ServerAddressByClientCIDRs: []metav1.ServerAddressByClientCIDR{
				{ClientCIDR: "0.0.0.0/0", ServerAddress: r.Host},
			},
		})
	case len(parts) == 2 && parts[0] == "api" && parts[1] == "v1":
		writeJSON(w, http.StatusOK, s.resourceList(gvCore))
	case len(parts) == 1 && parts[0] == "apis":
		if wantsAggregated(r) {
			writeAggregated(w, s.aggregated(false))
			return true
		}
		list := &metav1.APIGroupList{TypeMeta: metav1.TypeMeta{Kind: "APIGroupList", APIVersion: "v1"}}
		for _, g := range s.reg.groups[1:] {
			list.Groups = append(list.Groups, apiGroup(g))
		}
		list.Groups = append(list.Groups, s.metricsAPIGroups()...) // metricsapi.go
		writeJSON(w, http.StatusOK, list)
	case len(parts) == 2 && parts[0] == "apis":
		for _, g := range s.reg.groups[1:] {
			if g.name == parts[1] {
				grp := apiGroup(g)
				grp.TypeMeta = metav1.TypeMeta{Kind: "APIGroup", APIVersion: "v1"}
				writeJSON(w, http.StatusOK, &grp)
				return true
			}
		}
		return false
	case len(parts) == 3 && parts[0] == "apis":
		gv := schema.GroupVersion{Group: parts[1], Version: parts[2]}
		if !s.reg.servesGroupVersion(gv) {
			return false
		}
		writeJSON(w, http.StatusOK, s.resourceList(gv))
	default:
		return false
	}
	return true
}

// wantsAggregated reports whether the Accept header asks for aggregated
// discovery (v2) before any plain JSON alternative.
func wantsAggregated(r *http.Request) bool {
	for _, c := range goautoneg.ParseAccept(r.Header.Get("Accept")) {
		if c.Type != "application" || c.SubType != "json" {
			continue
		}
		if c.Params["as"] == "APIGroupDiscoveryList" && c.Params["g"] == "apidiscovery.k8s.io" && c.Params["v"] == "v2" {
			return true
		}
		if c.Params["as"] == "" {
			return false
		}
	}
	return false
}

func writeAggregated(w http.ResponseWriter, list *apidiscoveryv2.APIGroupDiscoveryList) {
	data, err := json.Marshal(list)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", aggregatedMediaType)
	w.Header().Set("Vary", "Accept")
	_, _ = w.Write(data)
}

func apiGroup(g groupVersions) metav1.APIGroup {
	grp := metav1.APIGroup{Name: g.name}
	for _, v := range g.versions {
		grp.Versions = append(grp.Versions, metav1.GroupVersionForDiscovery{
			GroupVersion: schema.GroupVersion{Group: g.name, Version: v}.String(), Version: v,
		})
	}
	grp.PreferredVersion = grp.Versions[0]
	return grp
}

// resourceList is the legacy discovery document of one group version.
func (s *Server) resourceList(gv schema.GroupVersion) *metav1.APIResourceList {
	list := &metav1.APIResourceList{
		TypeMeta:     metav1.TypeMeta{Kind: "APIResourceList", APIVersion: "v1"},
		GroupVersion: gv.String(),
		APIResources: []metav1.APIResource{},
	}
	for _, res := range s.reg.resourcesOf(gv) {
		list.APIResources = append(list.APIResources, metav1.APIResource{
			Name: res.plural, SingularName: res.singular, Namespaced: res.namespaced, Kind: res.gvk.Kind,
			Verbs: standardVerbs, ShortNames: res.shortNames, Categories: res.categories,
		})
		for _, sub := range res.subresources {
			k := subresourceKind(res, sub)
			ar := metav1.APIResource{Name: res.plural + "/" + sub, Namespaced: res.namespaced, Kind: k.Kind, Verbs: subresourceVerbs(sub)}
			if k.GroupVersion() != gv {
				ar.Group, ar.Version = k.Group, k.Version
			}
			list.APIResources = append(list.APIResources, ar)
		}
	}
	return list
}

// aggregated builds the aggregated discovery document of the core group
// (for /api) or of the named groups (for /apis).
func (s *Server) aggregated(core bool) *apidiscoveryv2.APIGroupDiscoveryList {
	list := &apidiscoveryv2.APIGroupDiscoveryList{
		TypeMeta: metav1.TypeMeta{Kind: "APIGroupDiscoveryList", APIVersion: "apidiscovery.k8s.io/v2"},
		Items:    []apidiscoveryv2.APIGroupDiscovery{},
	}
	for _, g := range s.reg.groups {
		if (g.name == "") != core {
			continue
		}
		gd := apidiscoveryv2.APIGroupDiscovery{ObjectMeta: metav1.ObjectMeta{Name: g.name}}
		for _, v := range g.versions {
			gv := schema.GroupVersion{Group: g.name, Version: v}
			vd := apidiscoveryv2.APIVersionDiscovery{Version: v, Freshness: apidiscoveryv2.DiscoveryFreshnessCurrent}
			for _, res := range s.reg.resourcesOf(gv) {
				vd.Resources = append(vd.Resources, resourceDiscovery(res))
			}
			gd.Versions = append(gd.Versions, vd)
		}
		list.Items = append(list.Items, gd)
	}
	if !core {
		list.Items = append(list.Items, s.metricsAggregated()...) // metricsapi.go
	}
	return list
}

func resourceDiscovery(res *resource) apidiscoveryv2.APIResourceDiscovery {
	scope := apidiscoveryv2.ScopeCluster
	if res.namespaced {
		scope = apidiscoveryv2.ScopeNamespace
	}
	d := apidiscoveryv2.APIResourceDiscovery{
		Resource: res.plural, SingularResource: res.singular, Scope: scope, Verbs: standardVerbs,
		ShortNames: res.shortNames, Categories: res.categories,
		ResponseKind: &metav1.GroupVersionKind{Group: res.gvk.Group, Version: res.gvk.Version, Kind: res.gvk.Kind},
	}
	for _, sub := range res.subresources {
		k := subresourceKind(res, sub)
		d.Subresources = append(d.Subresources, apidiscoveryv2.APISubresourceDiscovery{
			Subresource:  sub,
			ResponseKind: &metav1.GroupVersionKind{Group: k.Group, Version: k.Version, Kind: k.Kind},
			Verbs:        subresourceVerbs(sub),
		})
	}
	return d
}

// kubeVersion is the Kubernetes API level served (that of k8s.io/api).
var kubeVersion = version.Info{Major: "1", Minor: "37", GitVersion: "v1.37.2+tugboat"}

func (s *Server) serveVersion(w http.ResponseWriter, r *http.Request) {
	info := kubeVersion
	info.GoVersion = runtime.Version()
	info.Compiler = runtime.Compiler
	info.Platform = runtime.GOOS + "/" + runtime.GOARCH
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, st := range bi.Settings {
			switch st.Key {
			case "vcs.revision":
				info.GitCommit = st.Value
			case "vcs.time":
				info.BuildDate = st.Value
			case "vcs.modified":
				info.GitTreeState = map[string]string{"true": "dirty", "false": "clean"}[st.Value]
			}
		}
	}
	writeJSON(w, http.StatusOK, info)
}

// serveHealth serves /healthz, /livez and /readyz (and their /<check>
// subpaths, e.g. /readyz/ping). livez reports the process is up; healthz
// and readyz also need the Server ready. ?verbose lists the checks.
func (s *Server) serveHealth(w http.ResponseWriter, r *http.Request) {
	parts := splitPath(r.URL.Path)
	checks := []struct {
		name string
		ok   bool
	}{{"ping", true}}
	if parts[0] != "livez" {
		checks = append(checks, struct {
			name string
			ok   bool
		}{"store", s.Ready()})
	}
	healthy := true
	var b strings.Builder
	for _, c := range checks {
		if len(parts) == 2 && parts[1] != c.name {
			continue
		}
		if !c.ok {
			healthy = false
			fmt.Fprintf(&b, "[-]%s failed: reason withheld\n", c.name)
			continue
		}
		fmt.Fprintf(&b, "[+]%s ok\n", c.name)
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	if !healthy {
		w.WriteHeader(http.StatusInternalServerError)
		fmt.Fprintf(w, "%s%s check failed\n", b.String(), parts[0])
		return
	}
	if r.URL.Query().Has("verbose") {
		fmt.Fprintf(w, "%s%s check passed\n", b.String(), parts[0])
		return
	}
	_, _ = w.Write([]byte("ok"))
}
