package scheduler

import "github.com/tugboat-dev/tugboat/hostapi"

// When is a set of facts the host tracks about the pod being scheduled
// and the cluster (hostapi's SchedWhen* bits). A plugin that declares one
// is only called for attempts where at least one of the facts holds; the
// zero value means always.
type When uint64

// Facts a plugin's relevance can name.
const (
	// Always: call the plugin for every attempt.
	Always When = 0
	// WhenPodNodeName: the pod's spec.nodeName is set.
	WhenPodNodeName When = hostapi.SchedWhenPodNodeName
	// WhenPodNodeSelector: the pod's spec.nodeSelector is not empty.
	WhenPodNodeSelector When = hostapi.SchedWhenPodNodeSelector
	// WhenPodNodeAffinity: the pod's spec.affinity.nodeAffinity is set.
	WhenPodNodeAffinity When = hostapi.SchedWhenPodNodeAffinity
	// WhenPodPodAffinity: the pod has podAffinity or podAntiAffinity.
	WhenPodPodAffinity When = hostapi.SchedWhenPodPodAffinity
	// WhenPodSpread: the pod has topologySpreadConstraints.
	WhenPodSpread When = hostapi.SchedWhenPodSpread
	// WhenPodTolerations: the pod has tolerations.
	WhenPodTolerations When = hostapi.SchedWhenPodTolerations
	// WhenPodHostPorts: a container of the pod asks for a host port.
	WhenPodHostPorts When = hostapi.SchedWhenPodHostPorts
	// WhenPodControlled: the pod has a controller ownerReference.
	WhenPodControlled When = hostapi.SchedWhenPodControlled
	// WhenNodeUnschedulable: some node is cordoned.
	WhenNodeUnschedulable When = hostapi.SchedWhenNodeUnschedulable
	// WhenNodeTaints: some node has taints.
	WhenNodeTaints When = hostapi.SchedWhenNodeTaints
	// WhenNodeImages: some node reports status.images.
	WhenNodeImages When = hostapi.SchedWhenNodeImages
	// WhenBoundPodAffinity: some bound or assumed pod has podAffinity or
	// podAntiAffinity.
	WhenBoundPodAffinity When = hostapi.SchedWhenBoundPodAffinity
)

// Relevancer is implemented by plugins that can say, from the facts of
// When alone, that they have nothing to do for an attempt — kube-
// scheduler's PreFilter/PreScore Skip decided by the host, so the plugin
// is not even called. It must be conservative: a plugin that might
// reject a node or score nodes differently when none of its facts holds
// must return Always. Relevance is asked after Configure (settings may
// widen it) and must not change until the next Configure.
type Relevancer interface {
	Relevance() (filter, score When)
}

// Relevance returns the plugin's declared relevance (Always for both when
// the plugin is not a Relevancer), as the host sees it.
func (m *Module) Relevance() (filter, score uint64) {
	r, ok := m.plugin.(Relevancer)
	if !ok || m.err != nil {
		return 0, 0
	}
	f, s := r.Relevance()
	return uint64(f), uint64(s)
}

// appendRelevance appends the answer of hostapi.ExportSchedRelevance.
func (m *Module) appendRelevance(b []byte) []byte {
	f, s := m.Relevance()
	return hostapi.AppendU64(hostapi.AppendU64(b, f), s)
}
