package agent

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/record"
)

// Events the agent records on pods, as kubelet names them.
const (
	eventCreated   = "Created"
	eventStarted   = "Started"
	eventFailed    = "Failed"
	eventKilling   = "Killing"
	eventBackOff   = "BackOff"
	eventUnhealthy = "Unhealthy"
)

// startEvents starts the event recorder (writes are asynchronous and
// rate-limited by client-go's correlator, which also aggregates repeats).
func (a *Agent) startEvents() {
	client := a.cfg.EventClient
	if client == nil {
		client = a.client
	}
	a.events = record.NewBroadcaster()
	a.events.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: client.CoreV1().Events("")})
	a.recorder = a.events.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "kubelet", Host: a.cfg.NodeName})
}

// event records an event on pod (no-op before startEvents).
func (a *Agent) event(pod *corev1.Pod, typ, reason, format string, args ...any) {
	if a.recorder == nil {
		return
	}
	a.recorder.Eventf(pod, typ, reason, format, args...)
}
