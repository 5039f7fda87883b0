package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"sync"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/tugboat-dev/tugboat/kernel/agent"

	"github.com/tugboat-dev/tugboat/kernel/network/dns"
	"github.com/tugboat-dev/tugboat/kernel/network/proxy"
)

// Proxy modes (config key proxy-mode).
const (
	proxyIptables  = "iptables"
	proxyUserspace = "userspace"
	proxyNone      = "none"
)

// nodeNetworkConfig configures the per-node network services: the Service
// proxy and the cluster DNS server. The server runs them for its own node;
// `tugboat agent` runs them for a joined node.
type nodeNetworkConfig struct {
	// Client watches Services and EndpointSlices (the node's credentials
	// may read them); required.
	Client kubernetes.Interface
	// ProxyMode is proxyIptables, proxyUserspace or proxyNone.
	ProxyMode string
	// NodePortAddress is where the userspace proxy serves node ports; an
	// invalid Addr serves none.
	NodePortAddress netip.Addr
	// ClusterCIDR is the pod range (iptables mode masquerades traffic to
	// cluster IPs from outside it).
	ClusterCIDR netip.Prefix
	// NetNS is the network namespace the iptables proxy programs; "" is
	// the process's own.
	NetNS string
	// DNSListen is the DNS server's UDP and TCP address ("" runs none).
	DNSListen string
	// DNSForward are the upstream servers (ip:port) for names outside the
	// cluster zone; none means those are refused.
	DNSForward []string
	Logger     *slog.Logger
}

// nodeNetwork is a running proxy and DNS server. They share one informer
// factory, whose Service cache also serves the agent's Service variables
// (Services).
type nodeNetwork struct {
	userspace *proxy.Userspace
	dns       *dns.Server
	services  corelisters.ServiceLister
	stop      func()
}

// startNodeNetwork starts the Service proxy and the DNS server and returns
// once the DNS server answers (so DNSAddr is known). Stop ends both.
func startNodeNetwork(ctx context.Context, cfg nodeNetworkConfig) (*nodeNetwork, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	n := &nodeNetwork{}
	ctx, cancel := context.WithCancel(ctx)
	factory := informers.NewSharedInformerFactory(cfg.Client, 0)
	svcInf := factory.Core().V1().Services()
	n.services = svcInf.Lister()
	svcInf.Informer() // registered before any Start
	var waits []chan struct{}
	n.stop = func() {
		cancel()
		for _, w := range waits {
			<-w
		}
		factory.Shutdown()
	}
	run := func(name string, f func(context.Context) error) <-chan error {
		done := make(chan struct{})
		errc := make(chan error, 1)
		waits = append(waits, done)
		go func() {
			defer close(done)
			err := f(ctx)
			if err != nil && ctx.Err() == nil {
				cfg.Logger.Error(name+" stopped", "err", err)
			}
			errc <- err
		}()
		return errc
	}

	var syncer proxy.Syncer
	var closeProxy func() error
	switch cfg.ProxyMode {
	case proxyIptables:
		p, err := proxy.NewIptables(proxy.IptablesConfig{NetNS: cfg.NetNS, ClusterCIDR: cfg.ClusterCIDR, Logger: cfg.Logger})
		if err != nil {
			cancel()
			return nil, err
		}
		syncer, closeProxy = p, p.Close
		cfg.Logger.Info("service proxy", "mode", proxyIptables, "backend", p.Backend())
	case proxyUserspace:
		p := proxy.NewUserspace(proxy.UserspaceConfig{NodeIP: cfg.NodePortAddress, Logger: cfg.Logger})
		n.userspace = p
		syncer, closeProxy = p, p.Close
		cfg.Logger.Info("service proxy", "mode", proxyUserspace, "node_ports", cfg.NodePortAddress)
	case proxyNone, "":
	default:
		cancel()
		return nil, fmt.Errorf("proxy mode %q: want %s, %s or %s", cfg.ProxyMode, proxyIptables, proxyUserspace, proxyNone)
	}
	if syncer != nil {
		run("service proxy", func(ctx context.Context) error {
			err := proxy.Run(ctx, proxy.RunConfig{Client: cfg.Client, Informers: factory, Logger: cfg.Logger}, syncer)
			if cerr := closeProxy(); cerr != nil {
				err = errors.Join(err, fmt.Errorf("close proxy: %w", cerr))
			}
			return err
		})
	}

	if cfg.DNSListen != "" {
		srv, err := dns.New(dns.Config{Client: cfg.Client, Informers: factory, Addr: cfg.DNSListen, Upstreams: cfg.DNSForward, Logger: cfg.Logger})
		if err != nil {
			n.stop()
			return nil, err
		}
		n.dns = srv
		errc := run("cluster DNS", srv.Run)
		select {
		case <-srv.Ready():
			cfg.Logger.Info("cluster DNS serving", "addr", srv.Addr(), "forward", cfg.DNSForward)
		case err := <-errc:
			n.stop()
			if err == nil {
				err = ctx.Err()
			}
			return nil, fmt.Errorf("cluster DNS: %w", err)
		}
	}
	factory.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), svcInf.Informer().HasSynced) {
		n.stop()
		return nil, fmt.Errorf("node network: service cache: %w", ctx.Err())
	}
	return n, nil
}

// Services lists the Services of a namespace from the node's cache, for
// the agent's Service variables (agent.Config.Services).
func (n *nodeNetwork) Services(namespace string) ([]*corev1.Service, error) {
	return n.services.Services(namespace).List(labels.Everything())
}

// servicesFunc is Services for agent.Config.Services; nil without a node
// network (the agent then asks the API server).
func (n *nodeNetwork) servicesFunc() func(string) ([]*corev1.Service, error) {
	if n == nil {
		return nil
	}
	return n.Services
}

// Stop ends the proxy (removing its iptables rules) and the DNS server,
// and waits for them.
func (n *nodeNetwork) Stop() { n.stop() }

// DNSAddr is the DNS server's address ("" if none runs): the nameserver
// to give the node's pods.
func (n *nodeNetwork) DNSAddr() string {
	if n.dns == nil {
		return ""
	}
	return n.dns.Addr()
}

// userspaceAddr is ServiceAddr for the agent's Config.ServiceAddr: nil
// unless the userspace proxy runs.
func (n *nodeNetwork) userspaceAddr() func(namespace, name, portName string) (netip.AddrPort, bool) {
	if n == nil || n.userspace == nil {
		return nil
	}
	return n.ServiceAddr
}

// ServiceAddr is where a userspace proxy serves service port portName of
// namespace/name for this node's pods (cluster IPs are not routable
// without iptables), e.g. for <SVC>_SERVICE_HOST/_PORT variables; false
// in other modes or for unknown ports.
func (n *nodeNetwork) ServiceAddr(namespace, name, portName string) (netip.AddrPort, bool) {
	if n.userspace == nil {
		return netip.AddrPort{}, false
	}
	return n.userspace.Addr(namespace, name, portName)
}

// Network modes (config key and agent flag network-mode).
const (
	networkHost   = "host"
	networkBridge = "bridge"
)

// checkNetworkMode validates network-mode for a workload runtime: bridge
// needs root and a runtime that runs processes in network namespaces
// (exec, containerd).
func checkNetworkMode(mode, runtime string) error {
	switch mode {
	case networkHost:
		return nil
	case networkBridge:
		if runtime != "exec" && runtime != "containerd" {
			return fmt.Errorf("bridge needs the exec or containerd runtime, not %s", runtime)
		}
		if uid := os.Geteuid(); uid != 0 {
			return fmt.Errorf("bridge needs root (network namespaces, links and routes); running as uid %d", uid)
		}
		return nil
	}
	return fmt.Errorf("want %s or %s", networkHost, networkBridge)
}

// podNetwork is the agent's pod network for a network mode: nil for host;
// for bridge, a cluster DNS server on the bridge's address (port 53) is
// started once the bridge is up, and the pods' resolv.conf names it. stop
// ends that DNS server.
func podNetwork(mode string, client kubernetes.Interface, forward []string, logger *slog.Logger) (*agent.NetworkConfig, func()) {
	if mode != networkBridge {
		return nil, func() {}
	}
	var mu sync.Mutex
	var nn *nodeNetwork
	stop := func() {
		mu.Lock()
		defer mu.Unlock()
		if nn != nil {
			nn.Stop()
			nn = nil
		}
	}
	return &agent.NetworkConfig{
		Ready: func(ctx context.Context, gw netip.Addr, _ netip.Prefix) (netip.Addr, error) {
			n, err := startNodeNetwork(ctx, nodeNetworkConfig{
				Client: client, ProxyMode: proxyNone, DNSListen: netip.AddrPortFrom(gw, 53).String(),
				DNSForward: forward, Logger: logger,
			})
			if err != nil {
				return netip.Addr{}, fmt.Errorf("pod DNS on %s: %w", gw, err)
			}
			mu.Lock()
			nn = n
			mu.Unlock()
			return gw, nil
		},
	}, stop
}
