package apiserver

import (
	"net/http"
	"strings"
	"sync"

	apidiscoveryv2 "k8s.io/api/apidiscovery/v2"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	metricsv1beta1 "k8s.io/metrics/pkg/apis/metrics/v1beta1"
)

// The resource metrics API (metrics.k8s.io/v1beta1: PodMetrics and
// NodeMetrics, get and list, label and field selectors; no watch) is
// served from a MetricsSource — the kernel's scraper — as kube-apiserver
// serves it through the metrics-server APIService. The group appears in
// discovery only once a source is set, so `kubectl top` reports "Metrics
// API not available" on a server without one.

// MetricsSource holds the latest resource metrics.
type MetricsSource interface {
	// PodMetrics returns the metrics of the pods of namespace ("": all).
	PodMetrics(namespace string) []metricsv1beta1.PodMetrics
	// NodeMetrics returns the metrics of the nodes.
	NodeMetrics() []metricsv1beta1.NodeMetrics
}

// metricsSources holds each Server's source (beside the Server, like
// nodeConnectors).
var metricsSources sync.Map // *Server -> MetricsSource

// SetMetricsSource serves metrics.k8s.io from src (nil: not at all).
func (s *Server) SetMetricsSource(src MetricsSource) {
	if src == nil {
		metricsSources.Delete(s)
		return
	}
	metricsSources.Store(s, src)
}

func (s *Server) metricsSource() (MetricsSource, bool) {
	v, ok := metricsSources.Load(s)
	if !ok {
		return nil, false
	}
	return v.(MetricsSource), true
}

const metricsGroup = "metrics.k8s.io"

var metricsGV = schema.GroupVersion{Group: metricsGroup, Version: "v1beta1"}

// metricsVerbs are the verbs metrics-server serves.
var metricsVerbs = metav1.Verbs{"get", "list"}

// metricsAPIGroups returns the metrics group for /apis when served.
func (s *Server) metricsAPIGroups() []metav1.APIGroup {
	if _, ok := s.metricsSource(); !ok {
		return nil
	}
	v := metav1.GroupVersionForDiscovery{GroupVersion: metricsGV.String(), Version: metricsGV.Version}
	return []metav1.APIGroup{{Name: metricsGroup, Versions: []metav1.GroupVersionForDiscovery{v}, PreferredVersion: v}}
}

// metricsAggregated returns the metrics group's aggregated discovery when
// served.
func (s *Server) metricsAggregated() []apidiscoveryv2.APIGroupDiscovery {
	if _, ok := s.metricsSource(); !ok {
		return nil
	}
	res := func(plural, singular, kind string, scope apidiscoveryv2.ResourceScope) apidiscoveryv2.APIResourceDiscovery {
		return apidiscoveryv2.APIResourceDiscovery{Resource: plural, SingularResource: singular, Scope: scope, Verbs: metricsVerbs,
			ResponseKind: &metav1.GroupVersionKind{Group: metricsGroup, Version: metricsGV.Version, Kind: kind}}
	}
	return []apidiscoveryv2.APIGroupDiscovery{{
		ObjectMeta: metav1.ObjectMeta{Name: metricsGroup},
		Versions: []apidiscoveryv2.APIVersionDiscovery{{
			Version: metricsGV.Version, Freshness: apidiscoveryv2.DiscoveryFreshnessCurrent,
			Resources: []apidiscoveryv2.APIResourceDiscovery{
				res("nodes", "", "NodeMetrics", apidiscoveryv2.ScopeCluster),
				res("pods", "", "PodMetrics", apidiscoveryv2.ScopeNamespace),
			},
		}},
	}}
}

// serveMetricsAPI serves /apis/metrics.k8s.io/...; it reports false for
// other paths or when no source is set.
func (s *Server) serveMetricsAPI(w http.ResponseWriter, r *http.Request) bool {
	parts := splitPath(r.URL.Path)
	if len(parts) < 2 || parts[0] != "apis" || parts[1] != metricsGroup {
		return false
	}
	src, ok := s.metricsSource()
	if !ok {
		return false
	}
	if len(parts) == 2 {
		g := s.metricsAPIGroups()[0]
		g.TypeMeta = metav1.TypeMeta{Kind: "APIGroup", APIVersion: "v1"}
		writeJSON(w, http.StatusOK, &g)
		return true
	}
	if parts[2] != metricsGV.Version {
		writeStatus(w, apierrors.NewNotFound(schema.GroupResource{Group: metricsGroup}, parts[2]).ErrStatus)
		return true
	}
	rest := parts[3:]
	if len(rest) == 0 {
		writeJSON(w, http.StatusOK, &metav1.APIResourceList{
			TypeMeta:     metav1.TypeMeta{Kind: "APIResourceList", APIVersion: "v1"},
			GroupVersion: metricsGV.String(),
			APIResources: []metav1.APIResource{
				{Name: "nodes", Kind: "NodeMetrics", Verbs: metricsVerbs},
				{Name: "pods", Namespaced: true, Kind: "PodMetrics", Verbs: metricsVerbs},
			},
		})
		return true
	}
	namespace := ""
	if len(rest) >= 3 && rest[0] == "namespaces" {
		namespace, rest = rest[1], rest[2:]
	}
	if len(rest) == 0 || len(rest) > 2 || (rest[0] != "pods" && rest[0] != "nodes") || (rest[0] == "nodes" && namespace != "") {
		writeStatus(w, apierrors.NewNotFound(schema.GroupResource{Group: metricsGroup}, strings.Join(parts[3:], "/")).ErrStatus)
		return true
	}
	gr := schema.GroupResource{Group: metricsGroup, Resource: rest[0]}
	q := r.URL.Query()
	switch {
	case r.Method != http.MethodGet:
		writeStatus(w, apierrors.NewMethodNotSupported(gr, strings.ToLower(r.Method)).ErrStatus)
		return true
	case q.Get("watch") == "true" || q.Get("watch") == "1":
		writeStatus(w, apierrors.NewMethodNotSupported(gr, "watch").ErrStatus)
		return true
	}
	sel, err := labels.Parse(q.Get("labelSelector"))
	if err != nil {
		writeStatus(w, apierrors.NewBadRequest("labelSelector: "+err.Error()).ErrStatus)
		return true
	}
	fsel, err := fields.ParseSelector(q.Get("fieldSelector"))
	if err != nil {
		writeStatus(w, apierrors.NewBadRequest("fieldSelector: "+err.Error()).ErrStatus)
		return true
	}
	name := ""
	if len(rest) == 2 {
		name = rest[1]
	}
	match := func(m *metav1.ObjectMeta) bool {
		if name != "" {
			return m.Name == name
		}
		return sel.Matches(labels.Set(m.Labels)) &&
			fsel.Matches(fields.Set{"metadata.name": m.Name, "metadata.namespace": m.Namespace})
	}
	if rest[0] == "pods" {
		list := &metricsv1beta1.PodMetricsList{TypeMeta: metav1.TypeMeta{Kind: "PodMetricsList", APIVersion: metricsGV.String()},
			Items: []metricsv1beta1.PodMetrics{}}
		for _, pm := range src.PodMetrics(namespace) {
			if match(&pm.ObjectMeta) {
				pm.TypeMeta = metav1.TypeMeta{Kind: "PodMetrics", APIVersion: metricsGV.String()}
				list.Items = append(list.Items, pm)
			}
		}
		switch {
		case name == "":
			writeJSON(w, http.StatusOK, list)
		case len(list.Items) == 0:
			writeStatus(w, apierrors.NewNotFound(gr, namespace+"/"+name).ErrStatus)
		default:
			writeJSON(w, http.StatusOK, &list.Items[0])
		}
		return true
	}
	list := &metricsv1beta1.NodeMetricsList{TypeMeta: metav1.TypeMeta{Kind: "NodeMetricsList", APIVersion: metricsGV.String()},
		Items: []metricsv1beta1.NodeMetrics{}}
	for _, nm := range src.NodeMetrics() {
		if match(&nm.ObjectMeta) {
			nm.TypeMeta = metav1.TypeMeta{Kind: "NodeMetrics", APIVersion: metricsGV.String()}
			list.Items = append(list.Items, nm)
		}
	}
	switch {
	case name == "":
		writeJSON(w, http.StatusOK, list)
	case len(list.Items) == 0:
		writeStatus(w, apierrors.NewNotFound(gr, name).ErrStatus)
	default:
		writeJSON(w, http.StatusOK, &list.Items[0])
	}
	return true
}
