package sim

import (
	"context"
	"fmt"
	"net/netip"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"
)

// nodeIndex indexes pods by spec.nodeName.
const nodeIndex = "nodeName"

// startInformers starts the node and pod informers and waits for their
// caches.
func (c *Cluster) startInformers(ctx context.Context) error {
	strip := func(obj any) (any, error) {
		if m, ok := obj.(metav1.Object); ok {
			m.SetManagedFields(nil)
		}
		return obj, nil
	}
	c.factory = informers.NewSharedInformerFactoryWithOptions(c.client, 0, informers.WithTransform(strip))
	nodes := c.nodeInformer()
	if _, err := nodes.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { c.nodeChanged(obj, false) },
		UpdateFunc: func(_, obj any) { c.nodeChanged(obj, false) },
		DeleteFunc: func(obj any) { c.nodeChanged(obj, true) },
	}); err != nil {
		return fmt.Errorf("sim: node handler: %w", err)
	}
	// Only bound pods: one informer for all simulated nodes.
	pods := c.client.CoreV1().Pods(metav1.NamespaceAll)
	c.pods = cache.NewSharedIndexInformerWithOptions(&cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			o.FieldSelector = "spec.nodeName!="
			return pods.List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.FieldSelector = "spec.nodeName!="
			return pods.Watch(ctx, o)
		},
	}, &corev1.Pod{}, cache.SharedIndexInformerOptions{Indexers: cache.Indexers{
		nodeIndex: func(obj any) ([]string, error) { return []string{obj.(*corev1.Pod).Spec.NodeName}, nil },
	}})
	if err := c.pods.SetTransform(strip); err != nil {
		return fmt.Errorf("sim: pod transform: %w", err)
	}
	if _, err := c.pods.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    c.podChanged,
		UpdateFunc: func(_, obj any) { c.podChanged(obj) },
		DeleteFunc: c.podDeleted,
	}); err != nil {
		return fmt.Errorf("sim: pod handler: %w", err)
	}
	c.factory.Start(ctx.Done())
	c.wg.Go(func() { c.pods.RunWithContext(ctx) })
	for typ, ok := range c.factory.WaitForCacheSync(ctx.Done()) {
		if !ok {
			return fmt.Errorf("sim: %v cache did not sync: %w", typ, ctx.Err())
		}
	}
	if !cache.WaitForCacheSync(ctx.Done(), c.pods.HasSynced) {
		return fmt.Errorf("sim: pod cache did not sync: %w", ctx.Err())
	}
	return nil
}

func (c *Cluster) nodeInformer() cache.SharedIndexInformer {
	return c.factory.Core().V1().Nodes().Informer()
}

func (c *Cluster) nodeChanged(obj any, deleted bool) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	nd, ok := obj.(*corev1.Node)
	if !ok {
		return
	}
	n := c.nodes[nd.Name]
	if n == nil {
		return
	}
	n.gone.Store(deleted)
	stopped := nd.Annotations[AnnotationStopped] == "true"
	if n.stopped.Swap(stopped) && !stopped && !deleted {
		c.resync(nd.Name)
	}
}

// resync queues every pod on node name.
func (c *Cluster) resync(name string) {
	objs, _ := c.pods.GetIndexer().ByIndex(nodeIndex, name)
	for _, obj := range objs {
		if key, err := cache.MetaNamespaceKeyFunc(obj); err == nil {
			c.queue.Add(key)
		}
	}
}

func (c *Cluster) podChanged(obj any) {
	pod, ok := obj.(*corev1.Pod)
	if !ok || c.nodes[pod.Spec.NodeName] == nil {
		return
	}
	if key, err := cache.MetaNamespaceKeyFunc(pod); err == nil {
		c.queue.Add(key)
	}
}

func (c *Cluster) podDeleted(obj any) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	if n := c.nodes[pod.Spec.NodeName]; n != nil {
		c.releaseIP(n, pod)
	}
	c.mu.Lock()
	delete(c.started, string(pod.UID))
	delete(c.usage, string(pod.UID))
	c.mu.Unlock()
}

// processNext handles one queued pod key; false once the queue is shut
// down.
func (c *Cluster) processNext(ctx context.Context) bool {
	key, quit := c.queue.Get()
	if quit {
		return false
	}
	defer c.queue.Done(key)
	after, err := c.sync(ctx, key)
	switch {
	case err != nil && ctx.Err() == nil:
		c.log.Debug("sim: sync pod", "pod", key, "err", err)
		c.queue.AddRateLimited(key)
	case after > 0:
		c.queue.Forget(key)
		c.queue.AddAfter(key, after)
	default:
		c.queue.Forget(key)
	}
	return true
}

// sync plays the kubelet for one pod; it returns how long to wait before
// looking at the pod again (0: only on its next change).
func (c *Cluster) sync(ctx context.Context, key string) (time.Duration, error) {
	obj, ok, err := c.pods.GetIndexer().GetByKey(key)
	if err != nil || !ok {
		return 0, err
	}
	pod := obj.(*corev1.Pod)
	n := c.nodes[pod.Spec.NodeName]
	if n == nil || n.stopped.Load() || n.gone.Load() {
		return 0, nil
	}
	if pod.DeletionTimestamp != nil {
		return 0, c.remove(ctx, pod)
	}
	switch pod.Status.Phase {
	case corev1.PodSucceeded, corev1.PodFailed:
		c.releaseIP(n, pod)
		return 0, nil
	case corev1.PodRunning:
		return c.maybeExit(ctx, n, pod)
	}
	return c.run(ctx, n, pod)
}

// remove deletes a pod being deleted at once (grace period 0).
func (c *Cluster) remove(ctx context.Context, pod *corev1.Pod) error {
	zero := int64(0)
	uid := pod.UID
	err := c.client.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{
		GracePeriodSeconds: &zero, Preconditions: &metav1.Preconditions{UID: &uid},
	})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		return fmt.Errorf("delete pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	return nil
}

// run writes the Running status of a pod just bound to n.
func (c *Cluster) run(ctx context.Context, n *node, pod *corev1.Pod) (time.Duration, error) {
	now := metav1.Now()
	p := pod.DeepCopy()
	st := &p.Status
	st.Phase = corev1.PodRunning
	st.Reason, st.Message = "", ""
	ip := nodeIP(n.index)
	st.HostIP = ip.String()
	st.HostIPs = []corev1.HostIP{{IP: st.HostIP}}
	if !p.Spec.HostNetwork {
		ip = c.allocIP(n, pod)
	}
	st.PodIP = ip.String()
	st.PodIPs = []corev1.PodIP{{IP: st.PodIP}}
	if st.StartTime == nil {
		st.StartTime = &now
	}
	for _, t := range []corev1.PodConditionType{corev1.PodReadyToStartContainers, corev1.PodInitialized, corev1.ContainersReady, corev1.PodReady} {
		setPodCondition(st, corev1.PodCondition{Type: t, Status: corev1.ConditionTrue, LastTransitionTime: now})
	}
	setPodCondition(st, corev1.PodCondition{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: now})
	st.InitContainerStatuses = nil
	for _, ct := range p.Spec.InitContainers {
		st.InitContainerStatuses = append(st.InitContainerStatuses, corev1.ContainerStatus{
			Name: ct.Name, Image: ct.Image, ImageID: "sim://" + ct.Image, ContainerID: containerID(pod, ct.Name),
			State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
				ExitCode: 0, Reason: "Completed", StartedAt: now, FinishedAt: now, ContainerID: containerID(pod, ct.Name)}},
			Ready: true,
		})
	}
	st.ContainerStatuses = runningStatuses(p, now, nil)
	if _, err := c.client.CoreV1().Pods(p.Namespace).UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
		if apierrors.IsNotFound(err) {
			return 0, nil
		}
		return 0, fmt.Errorf("pod %s/%s status: %w", p.Namespace, p.Name, err)
	}
	c.mu.Lock()
	c.started[string(pod.UID)] = now.Time
	c.mu.Unlock()
	if p.Spec.RestartPolicy == corev1.RestartPolicyAlways {
		return 0, nil
	}
	return c.exitAfter(pod), nil
}

// runningStatuses are the Running statuses of p's containers; prev, if
// set, are the statuses of the run that just ended (restart).
func runningStatuses(p *corev1.Pod, now metav1.Time, prev []corev1.ContainerStatus) []corev1.ContainerStatus {
	started := true
	var out []corev1.ContainerStatus
	for i, ct := range p.Spec.Containers {
		cs := corev1.ContainerStatus{
			Name: ct.Name, Image: ct.Image, ImageID: "sim://" + ct.Image, ContainerID: containerID(p, ct.Name),
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}},
			Ready: true, Started: &started,
		}
		if i < len(prev) {
			cs.RestartCount = prev[i].RestartCount + 1
			cs.LastTerminationState = prev[i].State
		}
		out = append(out, cs)
	}
	return out
}

func containerID(p *corev1.Pod, name string) string {
	return "sim://" + string(p.UID) + "/" + name
}

// exitAfter is how long pod runs before its containers exit.
func (c *Cluster) exitAfter(pod *corev1.Pod) time.Duration {
	if v, ok := pod.Annotations[AnnotationExitAfter]; ok {
		if d, err := time.ParseDuration(v); err == nil && d >= 0 {
			return max(d, time.Millisecond)
		}
		c.log.Warn("sim: bad "+AnnotationExitAfter+" annotation", "pod", pod.Namespace+"/"+pod.Name, "value", v)
	}
	return c.cfg.ExitAfter
}

// exitCode is the exit code of pod's containers.
func exitCode(pod *corev1.Pod) int32 {
	if v, ok := pod.Annotations[AnnotationExitCode]; ok {
		if n, err := strconv.ParseInt(v, 10, 32); err == nil {
			return int32(n)
		}
	}
	return 0
}

// maybeExit ends (or restarts) a running pod whose restartPolicy is not
// Always once its time is up.
func (c *Cluster) maybeExit(ctx context.Context, n *node, pod *corev1.Pod) (time.Duration, error) {
	if pod.Spec.RestartPolicy == corev1.RestartPolicyAlways {
		c.markIP(n, pod)
		return 0, nil
	}
	c.mu.Lock()
	start, ok := c.started[string(pod.UID)]
	c.mu.Unlock()
	if !ok { // the simulator restarted: use the recorded start
		start = time.Now()
		for _, cs := range pod.Status.ContainerStatuses {
			if cs.State.Running != nil {
				start = cs.State.Running.StartedAt.Time
			}
		}
		c.mu.Lock()
		c.started[string(pod.UID)] = start
		c.mu.Unlock()
	}
	if left := time.Until(start.Add(c.exitAfter(pod))); left > 0 {
		return left, nil
	}
	now := metav1.Now()
	code := exitCode(pod)
	p := pod.DeepCopy()
	st := &p.Status
	reason := "Completed"
	if code != 0 {
		reason = "Error"
	}
	terminated := make([]corev1.ContainerStatus, len(st.ContainerStatuses))
	for i, cs := range st.ContainerStatuses {
		t := &corev1.ContainerStateTerminated{ExitCode: code, Reason: reason, FinishedAt: now, ContainerID: cs.ContainerID}
		if cs.State.Running != nil {
			t.StartedAt = cs.State.Running.StartedAt
		}
		cs.State = corev1.ContainerState{Terminated: t}
		cs.Ready = false
		f := false
		cs.Started = &f
		terminated[i] = cs
	}
	restart := code != 0 && p.Spec.RestartPolicy == corev1.RestartPolicyOnFailure
	if restart {
		st.ContainerStatuses = runningStatuses(p, now, terminated)
	} else {
		st.ContainerStatuses = terminated
		st.Phase = corev1.PodSucceeded
		if code != 0 {
			st.Phase = corev1.PodFailed
		}
		for _, t := range []corev1.PodConditionType{corev1.ContainersReady, corev1.PodReady} {
			setPodCondition(st, corev1.PodCondition{Type: t, Status: corev1.ConditionFalse, Reason: "PodCompleted", LastTransitionTime: now})
		}
		setPodCondition(st, corev1.PodCondition{Type: corev1.PodReadyToStartContainers, Status: corev1.ConditionFalse, LastTransitionTime: now})
	}
	if _, err := c.client.CoreV1().Pods(p.Namespace).UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
		if apierrors.IsNotFound(err) {
			return 0, nil
		}
		return 0, fmt.Errorf("pod %s/%s status: %w", p.Namespace, p.Name, err)
	}
	if restart {
		c.mu.Lock()
		c.started[string(pod.UID)] = now.Time
		c.mu.Unlock()
		return c.exitAfter(pod), nil
	}
	c.releaseIP(n, pod)
	return 0, nil
}

// setPodCondition sets cond, keeping the transition time when the status
// did not change.
func setPodCondition(st *corev1.PodStatus, cond corev1.PodCondition) {
	for i, cur := range st.Conditions {
		if cur.Type == cond.Type {
			if cur.Status == cond.Status {
				cond.LastTransitionTime = cur.LastTransitionTime
			}
			st.Conditions[i] = cond
			return
		}
	}
	st.Conditions = append(st.Conditions, cond)
}

// allocIP returns pod's IP on n: the one it has, else a free one from the
// node's /24 (.2 to .254).
func (c *Cluster) allocIP(n *node, pod *corev1.Pod) netip.Addr {
	n.mu.Lock()
	defer n.mu.Unlock()
	if ip, err := netip.ParseAddr(pod.Status.PodIP); err == nil && podCIDR(n.index).Contains(ip) {
		n.ips[ip] = string(pod.UID)
		return ip
	}
	for ip, uid := range n.ips {
		if uid == string(pod.UID) {
			return ip
		}
	}
	// IPs of running pods the simulator has not looked at yet (after a
	// restart) are taken too.
	taken := make(map[netip.Addr]bool)
	objs, _ := c.pods.GetIndexer().ByIndex(nodeIndex, n.name)
	for _, obj := range objs {
		p := obj.(*corev1.Pod)
		if ip, err := netip.ParseAddr(p.Status.PodIP); err == nil && p.Status.Phase == corev1.PodRunning {
			taken[ip] = true
		}
	}
	base := podCIDR(n.index).Addr().As4()
	for h := 2; h < 255; h++ {
		base[3] = byte(h)
		ip := netip.AddrFrom4(base)
		if _, used := n.ips[ip]; !used && !taken[ip] {
			n.ips[ip] = string(pod.UID)
			return ip
		}
	}
	base[3] = 255 // more than 253 pods: share the broadcast address
	return netip.AddrFrom4(base)
}

// markIP records the IP of a running pod seen after a restart.
func (c *Cluster) markIP(n *node, pod *corev1.Pod) {
	if ip, err := netip.ParseAddr(pod.Status.PodIP); err == nil && podCIDR(n.index).Contains(ip) {
		n.mu.Lock()
		n.ips[ip] = string(pod.UID)
		n.mu.Unlock()
	}
}

func (c *Cluster) releaseIP(n *node, pod *corev1.Pod) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for ip, uid := range n.ips {
		if uid == string(pod.UID) {
			delete(n.ips, ip)
		}
	}
}
