package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"

	"github.com/tugboat-dev/tugboat/kernel/dataplane"
	"github.com/tugboat-dev/tugboat/kernel/errdefs"
	"github.com/tugboat-dev/tugboat/kernel/network"
	"github.com/tugboat-dev/tugboat/kernel/network/bridge"
	"github.com/tugboat-dev/tugboat/kernel/network/dns"
)

// NetworkConfig turns on bridge mode (Config.Network): every pod that is
// not hostNetwork gets a network namespace of its own, joined to the
// node's bridge, and an address from the node's pod CIDR
// (kernel/network/bridge); all its containers run in that namespace. The
// agent waits for the Node's spec.podCIDR before it runs pods, keeps
// host-gw routes to the other nodes' pod CIDRs, and gives pods a
// resolv.conf naming the cluster DNS. Bridge mode needs root.
//
// resolv.conf reaches a container as a read-only mount at
// /etc/resolv.conf: image runtimes (containerd) mount it into the
// container's root; the exec runtime, whose processes share the host's
// files, bind-mounts it in the container's private mount namespace (as
// root), so the resolver of a host command sees the cluster DNS while the
// host's own file is untouched. The file is <dir>/pods/<uid>/resolv.conf.
type NetworkConfig struct {
	// Bridge names the node's bridge; "" means bridge.DefaultBridge.
	Bridge string
	// MTU of the bridge and veths; 0 means 1500.
	MTU int
	// ClusterDomain is the DNS zone of the search path; "" means
	// cluster.local.
	ClusterDomain string
	// Ready is called once the bridge is up, with its address (the pods'
	// gateway, where a node-local DNS server can listen); it returns the
	// nameserver to write into pods' resolv.conf (an invalid address
	// writes none). Nil writes none.
	Ready func(ctx context.Context, gateway netip.Addr, podCIDR netip.Prefix) (netip.Addr, error)
	// RouteResync is how often host-gw routes are rebuilt besides on Node
	// changes; 0 means 30s.
	RouteResync time.Duration
}

// podNetwork is the running bridge mode of an agent.
type podNetwork struct {
	cfg        NetworkConfig
	br         *bridge.Network
	nameserver netip.Addr

	// mu serializes pod setups with the cleanup of leftovers, so a pod
	// being set up is never taken for a leftover.
	mu  sync.Mutex
	att map[string]bridge.Attachment // by pod UID, pods set up by this agent
	// finished holds the addresses of finished pods whose network was
	// released (releaseFinished), for their status, until they are
	// deleted.
	finished map[string]string
}

// startNetwork waits for the node's pod CIDR, brings up the bridge and
// starts the host-gw route loop.
func (a *Agent) startNetwork(ctx context.Context) error {
	cfg := *a.cfg.Network
	if cfg.RouteResync == 0 {
		cfg.RouteResync = 30 * time.Second
	}
	cidr, err := a.waitPodCIDR(ctx)
	if err != nil {
		return err
	}
	dir := filepath.Join(a.cfg.Dir, "network")
	br, err := bridge.New(bridge.Config{
		PodCIDR: cidr, StateDir: filepath.Join(dir, "ipam"), NetNSDir: filepath.Join(dir, "netns"),
		Bridge: cfg.Bridge, MTU: cfg.MTU, Logger: a.log,
	})
	if err != nil {
		return fmt.Errorf("agent: pod network: %w", err)
	}
	n := &podNetwork{cfg: cfg, br: br, att: map[string]bridge.Attachment{}, finished: map[string]string{}}
	if cfg.Ready != nil {
		if n.nameserver, err = cfg.Ready(ctx, br.Gateway(), cidr); err != nil {
			br.Close()
			return fmt.Errorf("agent: pod network: %w", err)
		}
	}
	a.net = n
	a.wg.Go(func() { a.syncRoutes(ctx) })
	a.log.Info("pod network ready", "mode", "bridge", "pod_cidr", cidr, "gateway", br.Gateway(), "nameserver", n.nameserver)
	return nil
}

// waitPodCIDR returns the node's spec.podCIDR once the server has
// allocated it.
func (a *Agent) waitPodCIDR(ctx context.Context) (netip.Prefix, error) {
	logged := time.Time{}
	for {
		n, err := a.client.CoreV1().Nodes().Get(ctx, a.cfg.NodeName, metav1.GetOptions{})
		if err == nil && n.Spec.PodCIDR != "" {
			p, perr := netip.ParsePrefix(n.Spec.PodCIDR)
			if perr != nil {
				return netip.Prefix{}, fmt.Errorf("agent: node %s: pod CIDR %q: %v: %w", a.cfg.NodeName, n.Spec.PodCIDR, perr, errdefs.ErrInvalid)
			}
			return p.Masked(), nil
		}
		if time.Since(logged) > 10*time.Second {
			a.log.Info("agent: waiting for the node's pod CIDR (bridge network mode)", "node", a.cfg.NodeName, "err", err)
			logged = time.Now()
		}
		select {
		case <-ctx.Done():
			return netip.Prefix{}, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// syncRoutes keeps a host-gw route to every other node's pod CIDR, on
// every Node change and every RouteResync.
func (a *Agent) syncRoutes(ctx context.Context) {
	f := informers.NewSharedInformerFactory(a.client, 0)
	nodes := f.Core().V1().Nodes()
	kick := make(chan struct{}, 1)
	poke := func(any) {
		select {
		case kick <- struct{}{}:
		default:
		}
	}
	nodes.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: poke, UpdateFunc: func(_, o any) { poke(o) }, DeleteFunc: poke,
	})
	f.Start(ctx.Done())
	defer f.Shutdown()
	f.WaitForCacheSync(ctx.Done())
	t := time.NewTicker(a.net.cfg.RouteResync)
	defer t.Stop()
	var last string
	for {
		list, err := nodes.Lister().List(labels.Everything())
		if err == nil {
			peers := network.Peers(list, a.cfg.NodeName)
			if err := a.net.br.SyncRoutes(peers); err != nil {
				a.log.Warn("agent: host-gw routes", "err", err)
			} else if s := fmt.Sprint(peers); s != last {
				a.log.Info("agent: host-gw routes", "peers", s)
				last = s
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-kick:
		case <-t.C:
		}
	}
}

// closeNetwork releases the bridge's netlink handle (the network stays).
func (a *Agent) closeNetwork() {
	if a.net != nil {
		a.net.br.Close()
	}
}

// prepare readies a pod before its containers start: its network, then
// its volumes.
func (w *podWorker) prepare(ctx context.Context, pod *corev1.Pod) error {
	if err := w.a.setupPodNetwork(pod); err != nil {
		return fmt.Errorf("pod network: %w", err)
	}
	return w.prepareVolumes(ctx, pod)
}

// usesPodNetwork reports whether a pod gets its own network namespace.
func (a *Agent) usesPodNetwork(pod *corev1.Pod) bool {
	return a.net != nil && !pod.Spec.HostNetwork
}

// setupPodNetwork attaches a pod to the bridge (idempotent: a restarted
// agent finds the same namespace and address) and writes its resolv.conf.
func (a *Agent) setupPodNetwork(pod *corev1.Pod) error {
	if !a.usesPodNetwork(pod) || terminalPhase(pod.Status.Phase) {
		return nil // a finished pod needs no network (after a restart)
	}
	n := a.net
	uid := string(pod.UID)
	n.mu.Lock()
	defer n.mu.Unlock()
	att, err := n.br.Setup(uid)
	if err != nil {
		return err
	}
	host, _ := os.ReadFile("/etc/resolv.conf") // only for dnsPolicy Default with dnsConfig
	if content, ok := dns.PodResolv(pod, n.nameserver, n.cfg.ClusterDomain, host); ok {
		dir := a.podDir(uid)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("resolv.conf: %w", err)
		}
		if err := os.WriteFile(filepath.Join(dir, "resolv.conf"), []byte(content), 0o644); err != nil {
			return fmt.Errorf("resolv.conf: %w", err)
		}
	}
	n.att[uid] = att
	return nil
}

// netSpec puts a container of a pod-network pod into the pod's namespace
// with its resolv.conf.
func (w *podWorker) netSpec(pod *corev1.Pod, spec *dataplane.ContainerSpec) {
	att, ok := w.a.attachment(string(pod.UID))
	if !ok {
		return
	}
	spec.NetNS = att.NetNS
	resolv := filepath.Join(w.a.podDir(w.uid), "resolv.conf")
	if _, err := os.Stat(resolv); err == nil {
		spec.Mounts = append(spec.Mounts, dataplane.Mount{HostPath: resolv, ContainerPath: "/etc/resolv.conf", ReadOnly: true})
	}
}

// attachment returns a set-up pod's place on the network.
func (a *Agent) attachment(uid string) (bridge.Attachment, bool) {
	if a.net == nil {
		return bridge.Attachment{}, false
	}
	a.net.mu.Lock()
	defer a.net.mu.Unlock()
	att, ok := a.net.att[uid]
	return att, ok
}

// podNetNS is the path of a pod's network namespace; "" when it runs on
// the node's network.
func (a *Agent) podNetNS(pod *corev1.Pod) string {
	if att, ok := a.attachment(string(pod.UID)); ok && a.usesPodNetwork(pod) {
		return att.NetNS
	}
	return ""
}

// dialIn connects to a TCP address from inside the network namespace at
// netns ("" is the agent's), as kubelet's port-forward connects to the
// pod's localhost.
func dialIn(netns, addr string) (net.Conn, error) {
	dial := func() (net.Conn, error) { return net.DialTimeout("tcp", addr, 10*time.Second) }
	if netns == "" {
		return dial()
	}
	var c net.Conn
	err := bridge.InNetNS(netns, func() error {
		var err error
		c, err = dial()
		return err
	})
	return c, err
}

// podIP is the address a pod is reached at: its own in bridge mode ("" until
// it is set up; the one it had once it has finished), else the node's.
func (a *Agent) podIP(pod *corev1.Pod) string {
	if !a.usesPodNetwork(pod) {
		return a.hostIP()
	}
	a.net.mu.Lock()
	defer a.net.mu.Unlock()
	if att, ok := a.net.att[string(pod.UID)]; ok {
		return att.IP.String()
	}
	if ip, ok := a.net.finished[string(pod.UID)]; ok {
		return ip
	}
	if terminalPhase(pod.Status.Phase) {
		return pod.Status.PodIP
	}
	return ""
}

// releaseFinished frees the namespace and address of a pod that has
// finished (phase Succeeded or Failed: its containers have all exited and
// none will start again), as kubelet tears down a finished pod's sandbox,
// so Jobs do not exhaust the node's pod CIDR; status.podIP keeps the
// address it had.
func (a *Agent) releaseFinished(pod *corev1.Pod, phase corev1.PodPhase) {
	if !terminalPhase(phase) || !a.usesPodNetwork(pod) {
		return
	}
	uid := string(pod.UID)
	n := a.net
	n.mu.Lock()
	defer n.mu.Unlock()
	att, ok := n.att[uid]
	if !ok {
		return
	}
	delete(n.att, uid)
	n.finished[uid] = att.IP.String()
	if err := n.br.Teardown(uid); err != nil {
		a.log.Warn("agent: pod network teardown", "pod_uid", uid, "err", err)
	}
}

// teardownPodNetwork removes a deleted pod from the network.
func (a *Agent) teardownPodNetwork(uid string) {
	if a.net == nil {
		return
	}
	a.net.mu.Lock()
	defer a.net.mu.Unlock()
	delete(a.net.att, uid)
	delete(a.net.finished, uid)
	if err := a.net.br.Teardown(uid); err != nil {
		a.log.Warn("agent: pod network teardown", "pod_uid", uid, "err", err)
	}
}

// cleanupNetwork tears down the namespaces and addresses of pods that no
// longer exist (deleted while the agent was down).
func (a *Agent) cleanupNetwork(live map[string]bool) {
	if a.net == nil {
		return
	}
	uids, err := a.net.br.Pods()
	if err != nil {
		a.log.Warn("agent: list pod network leftovers", "err", err)
		return
	}
	a.net.mu.Lock()
	defer a.net.mu.Unlock()
	var errs []error
	for _, uid := range uids {
		if _, ok := a.net.att[uid]; ok || live[uid] {
			continue
		}
		errs = append(errs, a.net.br.Teardown(uid))
	}
	if err := errors.Join(errs...); err != nil {
		a.log.Warn("agent: pod network leftovers", "err", err)
	}
}

// serviceEnv are the Service variables of a container, as kubelet sets
// them: for every Service of the pod's namespace with a cluster IP (when
// enableServiceLinks, the default) and for default/kubernetes,
// <SVC>_SERVICE_HOST, <SVC>_SERVICE_PORT, <SVC>_SERVICE_PORT_<PORT> and
// the Docker-link variables (<SVC>_PORT, <SVC>_PORT_<n>_<PROTO>...). A pod
// on the node's network whose node runs the userspace proxy
// (Config.ServiceAddr) gets the proxy's local address for each port
// instead of the cluster IP, which only the iptables proxy makes
// reachable. Errors listing Services leave their variables out.
func (a *Agent) serviceEnv(ctx context.Context, pod *corev1.Pod) [][2]string {
	list := a.cfg.Services
	if list == nil {
		list = func(ns string) ([]*corev1.Service, error) {
			l, err := a.client.CoreV1().Services(ns).List(ctx, metav1.ListOptions{ResourceVersion: "0"})
			if err != nil {
				return nil, err
			}
			out := make([]*corev1.Service, len(l.Items))
			for i := range l.Items {
				out[i] = &l.Items[i]
			}
			return out, nil
		}
	}
	var svcs []*corev1.Service
	if pod.Spec.EnableServiceLinks == nil || *pod.Spec.EnableServiceLinks {
		l, err := list(pod.Namespace)
		if err != nil {
			a.log.Debug("agent: service variables", "namespace", pod.Namespace, "err", err)
		}
		svcs = l
	}
	if pod.Namespace != metav1.NamespaceDefault || len(svcs) == 0 {
		l, _ := list(metav1.NamespaceDefault)
		for _, s := range l {
			if s.Name == "kubernetes" {
				svcs = append(svcs, s)
			}
		}
	}
	// Sorted by name, so the variables come in a stable order.
	slices.SortFunc(svcs, func(x, y *corev1.Service) int { return strings.Compare(x.Name, y.Name) })
	local := a.cfg.ServiceAddr != nil && !a.usesPodNetwork(pod)
	var out [][2]string
	seen := map[string]bool{}
	for _, s := range svcs {
		ip := s.Spec.ClusterIP
		if ip == "" || ip == corev1.ClusterIPNone || len(s.Spec.Ports) == 0 || seen[s.Name] {
			continue
		}
		seen[s.Name] = true
		prefix := envName(s.Name)
		addr := func(p corev1.ServicePort) (string, string) {
			if local {
				if ap, ok := a.cfg.ServiceAddr(s.Namespace, s.Name, p.Name); ok {
					return ap.Addr().String(), fmt.Sprint(ap.Port())
				}
			}
			return ip, fmt.Sprint(p.Port)
		}
		host, port := addr(s.Spec.Ports[0])
		out = append(out, [2]string{prefix + "_SERVICE_HOST", host}, [2]string{prefix + "_SERVICE_PORT", port})
		for _, p := range s.Spec.Ports {
			if p.Name != "" {
				_, pp := addr(p)
				out = append(out, [2]string{prefix + "_SERVICE_PORT_" + envName(p.Name), pp})
			}
		}
		proto := strings.ToLower(string(s.Spec.Ports[0].Protocol))
		if proto == "" {
			proto = "tcp"
		}
		out = append(out, [2]string{prefix + "_PORT", proto + "://" + net.JoinHostPort(host, port)})
		for _, p := range s.Spec.Ports {
			h, pp := addr(p)
			pr := strings.ToLower(string(p.Protocol))
			if pr == "" {
				pr = "tcp"
			}
			base := prefix + "_PORT_" + fmt.Sprint(p.Port) + "_" + strings.ToUpper(pr)
			out = append(out, [2]string{base, pr + "://" + net.JoinHostPort(h, pp)},
				[2]string{base + "_PROTO", pr}, [2]string{base + "_PORT", pp}, [2]string{base + "_ADDR", h})
		}
	}
	return out
}

// envName is a Service or port name as an environment variable prefix.
func envName(s string) string { return strings.ToUpper(strings.ReplaceAll(s, "-", "_")) }
