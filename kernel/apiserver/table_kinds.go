package apiserver

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/duration"
)

var podTable = &tableDef{
	columns: []metav1.TableColumnDefinition{
		nameColumn,
		col("Ready", "string", "The aggregate readiness state of this pod for accepting traffic.", 0),
		col("Status", "string", "The aggregate status of the containers in this pod.", 0),
		col("Restarts", "string", "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.", 0),
		col("Age", "string", "CreationTimestamp is a timestamp representing the server time when this object was created.", 0),
		col("IP", "string", "IP address allocated to the pod. Routable at least within the cluster. Empty if not yet allocated.", 1),
		col("Node", "string", "NodeName is a request to schedule this pod onto a specific node.", 1),
		col("Nominated Node", "string", "nominatedNodeName is set only when this pod preempts other pods on the node.", 1),
		col("Readiness Gates", "string", "If specified, all readiness gates will be evaluated for pod readiness.", 1),
	},
	cells: podCells,
}

func podCells(obj runtime.Object, now time.Time) []any {
	pod := obj.(*corev1.Pod)
	reason, ready, restarts, lastRestart := podStatus(pod)
	restartText := strconv.Itoa(restarts)
	if restarts > 0 && !lastRestart.IsZero() {
		restartText = fmt.Sprintf("%d (%s ago)", restarts, duration.HumanDuration(now.Sub(lastRestart)))
	}
	ip := pod.Status.PodIP
	if len(pod.Status.PodIPs) > 0 {
		ip = pod.Status.PodIPs[0].IP
	}
	gates := "<none>"
	if n := len(pod.Spec.ReadinessGates); n > 0 {
		done := 0
		for _, g := range pod.Spec.ReadinessGates {
			for _, c := range pod.Status.Conditions {
				if c.Type == g.ConditionType && c.Status == corev1.ConditionTrue {
					done++
				}
			}
		}
		gates = fmt.Sprintf("%d/%d", done, n)
	}
	return []any{pod.Name, fmt.Sprintf("%d/%d", ready, len(pod.Spec.Containers)), reason, restartText,
		age(pod.CreationTimestamp, now), orNone(ip), orNone(pod.Spec.NodeName), orNone(pod.Status.NominatedNodeName), gates}
}

// podStatus computes kubectl's STATUS, the ready container count, the
// restarts and the last restart time, following Kubernetes' printPod.
func podStatus(pod *corev1.Pod) (reason string, ready, restarts int, last time.Time) {
	reason = string(pod.Status.Phase)
	if pod.Status.Reason != "" {
		reason = pod.Status.Reason
	}
	noteRestart := func(cs corev1.ContainerStatus) {
		restarts += int(cs.RestartCount)
		if t := cs.LastTerminationState.Terminated; t != nil && t.FinishedAt.After(last) {
			last = t.FinishedAt.Time
		}
	}
	initializing := false
	for i, cs := range pod.Status.InitContainerStatuses {
		noteRestart(cs)
		switch st := cs.State; {
		case st.Terminated != nil && st.Terminated.ExitCode == 0:
			continue
		case st.Terminated != nil:
			reason = "Init:" + st.Terminated.Reason
			if st.Terminated.Reason == "" {
				reason = fmt.Sprintf("Init:ExitCode:%d", st.Terminated.ExitCode)
			}
		case st.Waiting != nil && st.Waiting.Reason != "" && st.Waiting.Reason != "PodInitializing":
			reason = "Init:" + st.Waiting.Reason
		default:
			reason = fmt.Sprintf("Init:%d/%d", i, len(pod.Spec.InitContainers))
		}
		initializing = true
		break
	}
	if !initializing {
		restarts, last = 0, time.Time{}
		hasRunning := false
		for i := len(pod.Status.ContainerStatuses) - 1; i >= 0; i-- {
			cs := pod.Status.ContainerStatuses[i]
			noteRestart(cs)
			switch st := cs.State; {
			case st.Waiting != nil && st.Waiting.Reason != "":
				reason = st.Waiting.Reason
			case st.Terminated != nil && st.Terminated.Reason != "":
				reason = st.Terminated.Reason
			case st.Terminated != nil:
				reason = fmt.Sprintf("ExitCode:%d", st.Terminated.ExitCode)
				if st.Terminated.Signal != 0 {
					reason = fmt.Sprintf("Signal:%d", st.Terminated.Signal)
				}
			case cs.Ready && st.Running != nil:
				hasRunning = true
				ready++
			}
		}
		if reason == "Completed" && hasRunning {
			reason = "NotReady"
			for _, c := range pod.Status.Conditions {
				if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
					reason = "Running"
				}
			}
		}
	}
	if pod.DeletionTimestamp != nil {
		reason = "Terminating"
		if pod.Status.Reason == "NodeLost" {
			reason = "Unknown"
		}
	}
	return reason, ready, restarts, last
}

var nodeTable = &tableDef{
	columns: []metav1.TableColumnDefinition{
		nameColumn,
		col("Status", "string", "The status of the node", 0),
		col("Roles", "string", "The roles of the node", 0),
		col("Age", "string", "CreationTimestamp is a timestamp representing the server time when this object was created.", 0),
		col("Version", "string", "Kubelet Version reported by the node.", 0),
		col("Internal-IP", "string", "List of addresses reachable to the node.", 1),
		col("External-IP", "string", "List of addresses reachable to the node.", 1),
		col("OS-Image", "string", "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy)).", 1),
		col("Kernel-Version", "string", "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64).", 1),
		col("Container-Runtime", "string", "ContainerRuntime Version reported by the node through runtime remote API (e.g. containerd://1.4.2).", 1),
	},
	cells: func(obj runtime.Object, now time.Time) []any {
		n := obj.(*corev1.Node)
		status := "Unknown"
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady {
				status = map[corev1.ConditionStatus]string{corev1.ConditionTrue: "Ready", corev1.ConditionFalse: "NotReady"}[c.Status]
				if status == "" {
					status = "Unknown"
				}
			}
		}
		if n.Spec.Unschedulable {
			status += ",SchedulingDisabled"
		}
		info := n.Status.NodeInfo
		return []any{n.Name, status, nodeRoles(n), age(n.CreationTimestamp, now), info.KubeletVersion,
			orNone(nodeAddress(n, corev1.NodeInternalIP)), orNone(nodeAddress(n, corev1.NodeExternalIP)),
			orNone(info.OSImage), orNone(info.KernelVersion), orNone(info.ContainerRuntimeVersion)}
	},
}

func nodeRoles(n *corev1.Node) string {
	var roles []string
	for k, v := range n.Labels {
		switch {
		case strings.HasPrefix(k, "node-role.kubernetes.io/"):
			if role := strings.TrimPrefix(k, "node-role.kubernetes.io/"); role != "" {
				roles = append(roles, role)
			}
		case k == "kubernetes.io/role" && v != "":
			roles = append(roles, v)
		}
	}
	sort.Strings(roles)
	return orNone(strings.Join(roles, ","))
}

func nodeAddress(n *corev1.Node, t corev1.NodeAddressType) string {
	for _, a := range n.Status.Addresses {
		if a.Type == t {
			return a.Address
		}
	}
	return ""
}

var workloadWideColumns = []metav1.TableColumnDefinition{
	col("Containers", "string", "Names of each container in the template.", 1),
	col("Images", "string", "Images referenced by each container in the template.", 1),
	col("Selector", "string", "Label selector for pods. Existing ReplicaSets whose pods are selected by this will be the ones affected by this deployment.", 1),
}

func templateCells(t *corev1.PodTemplateSpec, sel *metav1.LabelSelector) []any {
	var names, images []string
	for _, c := range t.Spec.Containers {
		names = append(names, c.Name)
		images = append(images, c.Image)
	}
	selector := "<none>"
	if s, err := metav1.LabelSelectorAsSelector(sel); err == nil && !s.Empty() {
		selector = s.String()
	}
	return []any{strings.Join(names, ","), strings.Join(images, ","), selector}
}

func replicas(p *int32) int64 {
	if p == nil {
		return 1
	}
	return int64(*p)
}

var deploymentTable = &tableDef{
	columns: append([]metav1.TableColumnDefinition{
		nameColumn,
		col("Ready", "string", "Number of the pod with ready state", 0),
		col("Up-to-date", "integer", "Total number of non-terminated pods targeted by this deployment that have the desired template spec.", 0),
		col("Available", "integer", "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment.", 0),
		col("Age", "string", "CreationTimestamp is a timestamp representing the server time when this object was created.", 0),
	}, workloadWideColumns...),
	cells: func(obj runtime.Object, now time.Time) []any {
		d := obj.(*appsv1.Deployment)
		cells := []any{d.Name, fmt.Sprintf("%d/%d", d.Status.ReadyReplicas, replicas(d.Spec.Replicas)),
			int64(d.Status.UpdatedReplicas), int64(d.Status.AvailableReplicas), age(d.CreationTimestamp, now)}
		return append(cells, templateCells(&d.Spec.Template, d.Spec.Selector)...)
	},
}

var replicaSetTable = &tableDef{
	columns: append([]metav1.TableColumnDefinition{
		nameColumn,
		col("Desired", "integer", "Replicas is the number of desired replicas.", 0),
		col("Current", "integer", "Replicas is the most recently observed number of replicas.", 0),
		col("Ready", "integer", "The number of ready replicas for this replica set.", 0),
		col("Age", "string", "CreationTimestamp is a timestamp representing the server time when this object was created.", 0),
	}, workloadWideColumns...),
	cells: func(obj runtime.Object, now time.Time) []any {
		rs := obj.(*appsv1.ReplicaSet)
		cells := []any{rs.Name, replicas(rs.Spec.Replicas), int64(rs.Status.Replicas), int64(rs.Status.ReadyReplicas), age(rs.CreationTimestamp, now)}
		return append(cells, templateCells(&rs.Spec.Template, rs.Spec.Selector)...)
	},
}

var replicationControllerTable = &tableDef{
	columns: append([]metav1.TableColumnDefinition{
		nameColumn,
		col("Desired", "integer", "Replicas is the number of desired replicas.", 0),
		col("Current", "integer", "Replicas is the most recently observed number of replicas.", 0),
		col("Ready", "integer", "The number of ready replicas for this replication controller.", 0),
		col("Age", "string", "CreationTimestamp is a timestamp representing the server time when this object was created.", 0),
	}, workloadWideColumns...),
	cells: func(obj runtime.Object, now time.Time) []any {
		rc := obj.(*corev1.ReplicationController)
		cells := []any{rc.Name, replicas(rc.Spec.Replicas), int64(rc.Status.Replicas), int64(rc.Status.ReadyReplicas), age(rc.CreationTimestamp, now)}
		tmpl := rc.Spec.Template
		if tmpl == nil {
			tmpl = &corev1.PodTemplateSpec{}
		}
		return append(cells, templateCells(tmpl, &metav1.LabelSelector{MatchLabels: rc.Spec.Selector})...)
	},
}

var statefulSetTable = &tableDef{
	columns: append([]metav1.TableColumnDefinition{
		nameColumn,
		col("Ready", "string", "Number of the pod with ready state", 0),
		col("Age", "string", "CreationTimestamp is a timestamp representing the server time when this object was created.", 0),
	}, workloadWideColumns[:2]...),
	cells: func(obj runtime.Object, now time.Time) []any {
		s := obj.(*appsv1.StatefulSet)
		cells := []any{s.Name, fmt.Sprintf("%d/%d", s.Status.ReadyReplicas, replicas(s.Spec.Replicas)), age(s.CreationTimestamp, now)}
		return append(cells, templateCells(&s.Spec.Template, s.Spec.Selector)[:2]...)
	},
}

var daemonSetTable = &tableDef{
	columns: append([]metav1.TableColumnDefinition{
		nameColumn,
		col("Desired", "integer", "The total number of nodes that should be running the daemon pod.", 0),
		col("Current", "integer", "The number of nodes running at least one daemon pod and are supposed to.", 0),
		col("Ready", "integer", "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and ready.", 0),
		col("Up-to-date", "integer", "The total number of nodes that are running updated daemon pod", 0),
		col("Available", "integer", "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and available.", 0),
		col("Node Selector", "string", "NodeSelector is a selector which must be true for the pod to fit on a node.", 0),
		col("Age", "string", "CreationTimestamp is a timestamp representing the server time when this object was created.", 0),
	}, workloadWideColumns...),
	cells: func(obj runtime.Object, now time.Time) []any {
		d := obj.(*appsv1.DaemonSet)
		st := d.Status
		cells := []any{d.Name, int64(st.DesiredNumberScheduled), int64(st.CurrentNumberScheduled), int64(st.NumberReady),
			int64(st.UpdatedNumberScheduled), int64(st.NumberAvailable), orNone(labels.FormatLabels(d.Spec.Template.Spec.NodeSelector)),
			age(d.CreationTimestamp, now)}
		return append(cells, templateCells(&d.Spec.Template, d.Spec.Selector)...)
	},
}

var serviceTable = &tableDef{
	columns: []metav1.TableColumnDefinition{
		nameColumn,
		col("Type", "string", "type determines how the Service is exposed.", 0),
		col("Cluster-IP", "string", "clusterIP is the IP address of the service and is usually assigned randomly.", 0),
		col("External-IP", "string", "externalIPs is a list of IP addresses for which nodes in the cluster will also accept traffic for this service.", 0),
		col("Port(s)", "string", "The list of ports that are exposed by this service.", 0),
		col("Age", "string", "CreationTimestamp is a timestamp representing the server time when this object was created.", 0),
		col("Selector", "string", "Route service traffic to pods with label keys and values matching this selector.", 1),
	},
	cells: func(obj runtime.Object, now time.Time) []any {
		s := obj.(*corev1.Service)
		return []any{s.Name, string(s.Spec.Type), orNone(s.Spec.ClusterIP), serviceExternalIP(s), servicePorts(s),
			age(s.CreationTimestamp, now), orNone(labels.FormatLabels(s.Spec.Selector))}
	},
}

func serviceExternalIP(s *corev1.Service) string {
	switch s.Spec.Type {
	case corev1.ServiceTypeExternalName:
		return s.Spec.ExternalName
	case corev1.ServiceTypeLoadBalancer:
		var ips []string
		for _, in := range s.Status.LoadBalancer.Ingress {
			ips = append(ips, in.IP+in.Hostname)
		}
		ips = append(ips, s.Spec.ExternalIPs...)
		if len(ips) == 0 {
			return "<pending>"
		}
		return strings.Join(ips, ",")
	}
	return orNone(strings.Join(s.Spec.ExternalIPs, ","))
}

func servicePorts(s *corev1.Service) string {
	var ports []string
	for _, p := range s.Spec.Ports {
		if p.NodePort != 0 {
			ports = append(ports, fmt.Sprintf("%d:%d/%s", p.Port, p.NodePort, p.Protocol))
		} else {
			ports = append(ports, fmt.Sprintf("%d/%s", p.Port, p.Protocol))
		}
	}
	return orNone(strings.Join(ports, ","))
}

var namespaceTable = &tableDef{
	columns: []metav1.TableColumnDefinition{
		nameColumn,
		col("Status", "string", "The status of the namespace", 0),
		col("Age", "string", "CreationTimestamp is a timestamp representing the server time when this object was created.", 0),
	},
	cells: func(obj runtime.Object, now time.Time) []any {
		ns := obj.(*corev1.Namespace)
		return []any{ns.Name, string(ns.Status.Phase), age(ns.CreationTimestamp, now)}
	},
}

var configMapTable = &tableDef{
	columns: []metav1.TableColumnDefinition{
		nameColumn,
		col("Data", "integer", "Number of data entries in the ConfigMap.", 0),
		col("Age", "string", "CreationTimestamp is a timestamp representing the server time when this object was created.", 0),
	},
	cells: func(obj runtime.Object, now time.Time) []any {
		cm := obj.(*corev1.ConfigMap)
		return []any{cm.Name, int64(len(cm.Data) + len(cm.BinaryData)), age(cm.CreationTimestamp, now)}
	},
}

var secretTable = &tableDef{
	columns: []metav1.TableColumnDefinition{
		nameColumn,
		col("Type", "string", "The type of the secret", 0),
		col("Data", "integer", "The number of data entries in the secret", 0),
		col("Age", "string", "CreationTimestamp is a timestamp representing the server time when this object was created.", 0),
	},
	cells: func(obj runtime.Object, now time.Time) []any {
		s := obj.(*corev1.Secret)
		return []any{s.Name, string(s.Type), int64(len(s.Data)), age(s.CreationTimestamp, now)}
	},
}

var jobTable = &tableDef{
	columns: append([]metav1.TableColumnDefinition{
		nameColumn,
		col("Status", "string", "Status of the job.", 0),
		col("Completions", "string", "The completion status of the job.", 0),
		col("Duration", "string", "Time required to complete the job.", 0),
		col("Age", "string", "CreationTimestamp is a timestamp representing the server time when this object was created.", 0),
	}, workloadWideColumns...),
	cells: func(obj runtime.Object, now time.Time) []any {
		j := obj.(*batchv1.Job)
		status := "Running"
		for _, c := range j.Status.Conditions {
			if c.Status == corev1.ConditionTrue && (c.Type == batchv1.JobComplete || c.Type == batchv1.JobFailed || c.Type == batchv1.JobSuspended) {
				status = map[batchv1.JobConditionType]string{batchv1.JobComplete: "Complete", batchv1.JobFailed: "Failed", batchv1.JobSuspended: "Suspended"}[c.Type]
			}
		}
		completions := fmt.Sprintf("%d/%d", j.Status.Succeeded, replicas(j.Spec.Completions))
		dur := ""
		if j.Status.StartTime != nil {
			end := now
			if j.Status.CompletionTime != nil {
				end = j.Status.CompletionTime.Time
			}
			dur = duration.HumanDuration(end.Sub(j.Status.StartTime.Time))
		}
		cells := []any{j.Name, status, completions, dur, age(j.CreationTimestamp, now)}
		return append(cells, templateCells(&j.Spec.Template, j.Spec.Selector)...)
	},
}
