package agent

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tugboat-dev/tugboat/kernel/errdefs"
)

// Version is reported as the node's kubelet version.
const Version = "v1.37.2-tugboat"

// register creates the Node, or takes over an existing one unless another
// agent holds it (its identity annotation differs and its Lease is fresh).
func (a *Agent) register(ctx context.Context) error {
	nodes := a.client.CoreV1().Nodes()
	for attempt := 0; ; attempt++ {
		want := a.nodeObject()
		cur, err := nodes.Get(ctx, a.cfg.NodeName, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			if _, err = nodes.Create(ctx, want, metav1.CreateOptions{}); err == nil {
				return nil
			}
			if apierrors.IsAlreadyExists(err) && attempt < 5 {
				continue
			}
			return fmt.Errorf("agent: register node %s: %w", a.cfg.NodeName, err)
		}
		if err != nil {
			return fmt.Errorf("agent: register node %s: %w", a.cfg.NodeName, err)
		}
		if holder := cur.Annotations[AnnotationIdentity]; holder != a.identity && a.leaseFresh(ctx) {
			return fmt.Errorf("agent: node name %q is held by another agent (identity %q) whose lease is current: %w",
				a.cfg.NodeName, holder, errdefs.ErrConflict)
		}
		if cur.Annotations == nil {
			cur.Annotations = map[string]string{}
		}
		cur.Annotations[AnnotationIdentity] = a.identity
		if cur.Labels == nil {
			cur.Labels = map[string]string{}
		}
		for k, v := range want.Labels {
			cur.Labels[k] = v
		}
		updated, err := nodes.Update(ctx, cur, metav1.UpdateOptions{})
		if apierrors.IsConflict(err) && attempt < 5 {
			continue
		}
		if err != nil {
			return fmt.Errorf("agent: register node %s: %w", a.cfg.NodeName, err)
		}
		a.setStatus(updated)
		if _, err := nodes.UpdateStatus(ctx, updated, metav1.UpdateOptions{}); err != nil {
			return fmt.Errorf("agent: node %s status: %w", a.cfg.NodeName, err)
		}
		return nil
	}
}

// leaseFresh reports whether the node's Lease was renewed within its
// duration.
func (a *Agent) leaseFresh(ctx context.Context) bool {
	l, err := a.client.CoordinationV1().Leases(corev1.NamespaceNodeLease).Get(ctx, a.cfg.NodeName, metav1.GetOptions{})
	if err != nil || l.Spec.RenewTime == nil {
		return false
	}
	d := a.cfg.LeaseDuration
	if l.Spec.LeaseDurationSeconds != nil {
		d = time.Duration(*l.Spec.LeaseDurationSeconds) * time.Second
	}
	return time.Since(l.Spec.RenewTime.Time) < d
}

// nodeObject is the Node to create.
func (a *Agent) nodeObject() *corev1.Node {
	labels := map[string]string{
		corev1.LabelHostname:   a.cfg.NodeName,
		corev1.LabelOSStable:   goruntime.GOOS,
		corev1.LabelArchStable: goruntime.GOARCH,
	}
	for k, v := range a.cfg.Labels {
		labels[k] = v
	}
	n := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name: a.cfg.NodeName, Labels: labels,
			Annotations: map[string]string{AnnotationIdentity: a.identity},
		},
		Spec: corev1.NodeSpec{Taints: append([]corev1.Taint(nil), a.cfg.Taints...)},
	}
	a.setStatus(n)
	return n
}

// setStatus fills the status the agent owns: conditions (with a fresh
// heartbeat), addresses, capacity, node info and the daemon endpoint.
func (a *Agent) setStatus(n *corev1.Node) {
	now := metav1.Now()
	capacity := a.capacity()
	n.Status.Capacity = capacity
	n.Status.Allocatable = capacity.DeepCopy()
	n.Status.Phase = corev1.NodeRunning
	n.Status.Addresses = append([]corev1.NodeAddress(nil), a.cfg.Addresses...)
	n.Status.DaemonEndpoints.KubeletEndpoint.Port = a.cfg.KubeletPort
	n.Status.NodeInfo = a.nodeInfo()
	for _, c := range []corev1.NodeCondition{
		{Type: corev1.NodeMemoryPressure, Status: corev1.ConditionFalse, Reason: "KubeletHasSufficientMemory", Message: "kubelet has sufficient memory available"},
		{Type: corev1.NodeDiskPressure, Status: corev1.ConditionFalse, Reason: "KubeletHasNoDiskPressure", Message: "kubelet has no disk pressure"},
		{Type: corev1.NodePIDPressure, Status: corev1.ConditionFalse, Reason: "KubeletHasSufficientPID", Message: "kubelet has sufficient PID available"},
		{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady", Message: "tugboat agent is posting ready status"},
	} {
		c.LastHeartbeatTime, c.LastTransitionTime = now, now
		setNodeCondition(n, c)
	}
}

func setNodeCondition(n *corev1.Node, c corev1.NodeCondition) {
	for i, cur := range n.Status.Conditions {
		if cur.Type == c.Type {
			if cur.Status == c.Status {
				c.LastTransitionTime = cur.LastTransitionTime
			}
			n.Status.Conditions[i] = c
			return
		}
	}
	n.Status.Conditions = append(n.Status.Conditions, c)
}

// capacity detects the machine's resources; Config.Capacity overrides.
func (a *Agent) capacity() corev1.ResourceList {
	rl := corev1.ResourceList{
		corev1.ResourceCPU:  *resource.NewQuantity(int64(goruntime.NumCPU()), resource.DecimalSI),
		corev1.ResourcePods: *resource.NewQuantity(110, resource.DecimalSI),
	}
	if mem := memTotal(); mem > 0 {
		rl[corev1.ResourceMemory] = *resource.NewQuantity(mem, resource.BinarySI)
	}
	var fs unix.Statfs_t
	if unix.Statfs(a.cfg.Dir, &fs) == nil {
		rl[corev1.ResourceEphemeralStorage] = *resource.NewQuantity(int64(fs.Blocks)*fs.Bsize, resource.BinarySI)
	}
	if gpus, _ := filepath.Glob("/dev/nvidia[0-9]*"); len(gpus) > 0 {
		rl["nvidia.com/gpu"] = *resource.NewQuantity(int64(len(gpus)), resource.DecimalSI)
	}
	for k, v := range a.cfg.Capacity {
		rl[k] = v
	}
	return rl
}

// memTotal reads MemTotal from /proc/meminfo, in bytes.
func memTotal() int64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "MemTotal:"); ok {
			fields := strings.Fields(rest)
			if len(fields) > 0 {
				kb, _ := strconv.ParseInt(fields[0], 10, 64)
				return kb * 1024
			}
		}
	}
	return 0
}

func (a *Agent) nodeInfo() corev1.NodeSystemInfo {
	info := corev1.NodeSystemInfo{
		OperatingSystem: goruntime.GOOS, Architecture: goruntime.GOARCH,
		ContainerRuntimeVersion: a.rt.Name() + "://" + Version,
		KubeletVersion:          Version, KubeProxyVersion: Version,
		OSImage: "Linux",
	}
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		info.KernelVersion = unix.ByteSliceToString(u.Release[:])
	}
	if b, err := os.ReadFile("/etc/machine-id"); err == nil {
		info.MachineID = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/sys/kernel/random/boot_id"); err == nil {
		info.BootID = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/etc/os-release"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "PRETTY_NAME="); ok {
				info.OSImage = strings.Trim(v, `"`)
			}
		}
	}
	info.SystemUUID = a.identity
	return info
}

// defaultAddresses are the host's first non-loopback IPv4 address (else
// 127.0.0.1) and the node name as host name.
func defaultAddresses(name string) []corev1.NodeAddress {
	ip := "127.0.0.1"
	if addrs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && !n.IP.IsLoopback() && !n.IP.IsLinkLocalUnicast() {
				ip = n.IP.String()
				break
			}
		}
	}
	return []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: ip}, {Type: corev1.NodeHostName, Address: name}}
}

// hostIP is the node's InternalIP.
func (a *Agent) hostIP() string {
	for _, ad := range a.cfg.Addresses {
		if ad.Type == corev1.NodeInternalIP {
			return ad.Address
		}
	}
	return "127.0.0.1"
}

// heartbeat renews the node's Lease every RenewInterval, retrying
// failures with backoff from 200ms to 7s.
func (a *Agent) heartbeat(ctx context.Context, lease *coordinationv1.Lease) {
	backoff := 200 * time.Millisecond
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(a.cfg.RenewInterval):
		}
		var err error
		lease, err = a.renew(ctx, lease)
		if err == nil {
			backoff = 200 * time.Millisecond
			continue
		}
		// Retry with backoff until a renewal succeeds.
		for err != nil {
			lease = nil
			if ctx.Err() == nil {
				a.log.Warn("agent: renew node lease", "node", a.cfg.NodeName, "err", err, "retry_in", backoff)
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, 7*time.Second)
			lease, err = a.renew(ctx, lease)
		}
		backoff = 200 * time.Millisecond
	}
}

func (a *Agent) renew(ctx context.Context, cur *coordinationv1.Lease) (*coordinationv1.Lease, error) {
	leases := a.client.CoordinationV1().Leases(corev1.NamespaceNodeLease)
	now := metav1.NowMicro()
	secs := int32(a.cfg.LeaseDuration / time.Second)
	holder := a.cfg.NodeName
	if cur == nil {
		got, err := leases.Get(ctx, a.cfg.NodeName, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			l := &coordinationv1.Lease{
				ObjectMeta: metav1.ObjectMeta{Name: a.cfg.NodeName, Namespace: corev1.NamespaceNodeLease},
				Spec:       coordinationv1.LeaseSpec{HolderIdentity: &holder, LeaseDurationSeconds: &secs, RenewTime: &now},
			}
			if n, err := a.client.CoreV1().Nodes().Get(ctx, a.cfg.NodeName, metav1.GetOptions{}); err == nil {
				l.OwnerReferences = []metav1.OwnerReference{{APIVersion: "v1", Kind: "Node", Name: n.Name, UID: n.UID}}
			}
			return leases.Create(ctx, l, metav1.CreateOptions{})
		}
		if err != nil {
			return nil, err
		}
		cur = got
	}
	l := cur.DeepCopy()
	l.Spec.HolderIdentity, l.Spec.LeaseDurationSeconds, l.Spec.RenewTime = &holder, &secs, &now
	return leases.Update(ctx, l, metav1.UpdateOptions{})
}

// nodeStatusLoop posts the node status when it changes (checked every
// RenewInterval) or every StatusInterval.
func (a *Agent) nodeStatusLoop(ctx context.Context) {
	last := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(a.cfg.RenewInterval):
		}
		n, err := a.client.CoreV1().Nodes().Get(ctx, a.cfg.NodeName, metav1.GetOptions{})
		if err != nil {
			continue
		}
		next := n.DeepCopy()
		a.setStatus(next)
		if statusEqual(n.Status, next.Status) && time.Since(last) < a.cfg.StatusInterval {
			continue
		}
		if _, err := a.client.CoreV1().Nodes().UpdateStatus(ctx, next, metav1.UpdateOptions{}); err == nil {
			last = time.Now()
		} else if ctx.Err() == nil {
			a.log.Debug("agent: node status", "err", err)
		}
	}
}

// statusEqual compares node statuses ignoring heartbeat times.
func statusEqual(a, b corev1.NodeStatus) bool {
	a, b = *a.DeepCopy(), *b.DeepCopy()
	for _, s := range []*corev1.NodeStatus{&a, &b} {
		for i := range s.Conditions {
			s.Conditions[i].LastHeartbeatTime = metav1.Time{}
		}
	}
	return apiequality.Semantic.DeepEqual(a, b)
}
