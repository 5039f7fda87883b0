package main

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"strings"

	"k8s.io/client-go/kubernetes"

	"github.com/tugboat-dev/tugboat/kernel/apiserver"
	"github.com/tugboat-dev/tugboat/kernel/network"
)

// NetworkConfig is the network section of Config: the address ranges of
// pods and Services (like kubeadm's --pod-network-cidr and --service-cidr),
// the address the API server advertises to the cluster, and the local
// node's Service proxy and DNS server.
type NetworkConfig struct {
	ClusterCIDR      string `mapstructure:"cluster-cidr"`
	ServiceCIDR      string `mapstructure:"service-cidr"`
	NodePortRange    string `mapstructure:"service-node-port-range"`
	NodeCIDRMaskSize int64  `mapstructure:"node-cidr-mask-size"`
	AdvertiseAddress string `mapstructure:"advertise-address"`
	ProxyMode        string `mapstructure:"proxy-mode"`
	NodePortAddress  string `mapstructure:"proxy-nodeport-address"`
	DNS              struct {
		Listen  string   `mapstructure:"listen"`
		Forward []string `mapstructure:"forward"`
	} `mapstructure:"dns"`

	// Parsed by complete.
	clusterCIDR netip.Prefix
	serviceCIDR netip.Prefix
	nodePorts   apiserver.PortRange
	advertise   netip.Addr // invalid: derive from the listen address
}

// proxyModes are the proxy-mode values.
var proxyModes = []string{proxyUserspace, proxyIptables, proxyNone}

func networkOptions() []option {
	return []option{
		{"cluster-cidr", network.DefaultClusterCIDR.String(), "IPv4 range node pod CIDRs are cut from"},
		{"service-cidr", apiserver.DefaultServiceCIDR.String(), "IPv4 range Service cluster IPs come from; must not overlap cluster-cidr"},
		{"service-node-port-range", apiserver.DefaultNodePorts.String(), "port range Service node ports come from"},
		{"node-cidr-mask-size", int64(network.DefaultNodeMaskSize), "prefix length of each node's pod CIDR"},
		{"advertise-address", "", "IP address the default/kubernetes Service's endpoints point at, also the local node's InternalIP; empty means the listen address (the node: the first non-loopback IPv4 address), or the first non-loopback IPv4 address when listening on all"},
		{"proxy-mode", proxyUserspace, "Service proxy of the local node: userspace (a Go proxy per service port, no privileges), iptables (kube-proxy's rules in this machine's network namespace; root) or none"},
		{"proxy-nodeport-address", "", "address the userspace proxy serves node ports on; empty means the listen host (all addresses when listening on all), none serves none"},
		{"dns.listen", "127.0.0.1:0", "UDP and TCP address of the local node's cluster DNS server (port 0 picks one; it is logged); empty runs none"},
		{"dns.forward", []string{}, "upstream DNS servers (ip:port) for names outside cluster.local; none means those are refused"},
	}
}

func completeNetwork(c *Config) []error {
	n := &c.Network
	var errs []error
	var err error
	if n.clusterCIDR, err = netip.ParsePrefix(n.ClusterCIDR); err != nil {
		errs = append(errs, invalid("cluster-cidr", n.ClusterCIDR, err.Error()))
	}
	if n.serviceCIDR, err = netip.ParsePrefix(n.ServiceCIDR); err != nil {
		errs = append(errs, invalid("service-cidr", n.ServiceCIDR, err.Error()))
	}
	if len(errs) == 0 {
		if err := network.ValidateCIDRs(n.clusterCIDR, n.serviceCIDR); err != nil {
			errs = append(errs, fmt.Errorf("invalid value for cluster-cidr/service-cidr: %w", err))
		}
	}
	if n.nodePorts, err = apiserver.ParsePortRange(n.NodePortRange); err != nil {
		errs = append(errs, invalid("service-node-port-range", n.NodePortRange, err.Error()))
	}
	if n.NodeCIDRMaskSize < 1 || n.NodeCIDRMaskSize > 30 || (n.clusterCIDR.IsValid() && int(n.NodeCIDRMaskSize) <= n.clusterCIDR.Bits()) {
		errs = append(errs, invalid("node-cidr-mask-size", n.NodeCIDRMaskSize, "must be longer than cluster-cidr's prefix and at most 30"))
	}
	if n.AdvertiseAddress != "" {
		if n.advertise, err = netip.ParseAddr(n.AdvertiseAddress); err != nil || n.advertise.IsUnspecified() {
			errs = append(errs, invalid("advertise-address", n.AdvertiseAddress, "want a specific IP address"))
		}
	}
	if !slices.Contains(proxyModes, n.ProxyMode) {
		errs = append(errs, invalid("proxy-mode", n.ProxyMode, "want "+strings.Join(proxyModes, ", ")))
	}
	if a := n.NodePortAddress; a != "" && a != "none" {
		if _, err := netip.ParseAddr(a); err != nil {
			errs = append(errs, invalid("proxy-nodeport-address", a, "want an IP address, empty or none"))
		}
	}
	if n.DNS.Listen != "" {
		if _, err := netip.ParseAddrPort(n.DNS.Listen); err != nil {
			errs = append(errs, invalid("dns.listen", n.DNS.Listen, "want ip:port"))
		}
	}
	for _, u := range n.DNS.Forward {
		if _, err := netip.ParseAddrPort(u); err != nil {
			errs = append(errs, invalid("dns.forward", n.DNS.Forward, "want ip:port entries"))
			break
		}
	}
	return errs
}

// networkComponent runs the cluster-level network pieces (pod CIDR
// allocation, the default kubernetes Service, the Endpoints mirror). The
// local node's Service proxy and DNS server belong to the agent component
// (startLocalNodeNetwork); the API server allocates Service addresses from
// the same section.
func networkComponent() component {
	return component{
		name:     "network",
		options:  networkOptions,
		complete: completeNetwork,
		start:    startNetwork,
	}
}

func startNetwork(ctx context.Context, env componentEnv) (func(), error) {
	n := env.Config.Network
	cs, err := kubernetes.NewForConfig(env.Client(apiserver.User{Name: "system:kube-controller-manager"}))
	if err != nil {
		return nil, err
	}
	alloc, err := network.NewPodCIDRAllocator(network.PodCIDRConfig{
		Client:       cs,
		ClusterCIDR:  n.clusterCIDR,
		NodeMaskSize: int(n.NodeCIDRMaskSize),
		Logger:       env.Logger,
	})
	if err != nil {
		return nil, err
	}
	mirror, err := network.NewEndpointsMirror(cs, env.Logger)
	if err != nil {
		return nil, err
	}
	endpoint, err := advertisedEndpoint(ctx, n, env.Config.Listen, env.ServerURL)
	if err != nil {
		return nil, err
	}
	apiCS, err := kubernetes.NewForConfig(env.Client(apiserver.User{Name: "system:apiserver", Groups: []string{"system:masters"}}))
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	var dones []chan struct{}
	stop := func() {
		cancel()
		for _, d := range dones {
			<-d
		}
	}
	run := func(name string, f func(context.Context) error) {
		done := make(chan struct{})
		dones = append(dones, done)
		go func() {
			defer close(done)
			if err := f(ctx); err != nil && ctx.Err() == nil {
				env.Logger.Error(name+" stopped", "err", err)
			}
		}()
	}
	run("pod CIDR allocator", alloc.Run)
	run("endpoints mirror", mirror.Run)
	run("kubernetes service", func(ctx context.Context) error {
		return network.RunKubernetesService(ctx, network.KubernetesServiceConfig{
			Client: apiCS, ServiceCIDR: n.serviceCIDR, Endpoint: endpoint, Logger: env.Logger})
	})
	return stop, nil
}

// startLocalNodeNetwork runs the local node's Service proxy and DNS
// server (the agent component calls it unless disable-agent). They read
// with the node's identity, as they do on a joined node.
func startLocalNodeNetwork(ctx context.Context, env componentEnv) (*nodeNetwork, error) {
	n := env.Config.Network
	nodeCS, err := kubernetes.NewForConfig(env.Client(nodeUser(env.Config.Agent.NodeName)))
	if err != nil {
		return nil, err
	}
	return startNodeNetwork(ctx, nodeNetworkConfig{
		Client:          nodeCS,
		ProxyMode:       n.ProxyMode,
		NodePortAddress: nodePortAddress(n.NodePortAddress, env.Config.Listen),
		ClusterCIDR:     n.clusterCIDR,
		DNSListen:       n.DNS.Listen,
		DNSForward:      n.DNS.Forward,
		Logger:          env.Logger,
	})
}

// advertisedEndpoint is the API server's address for the kubernetes
// Service: advertise-address, else the listen host if it is a specific
// IP, else (listening on all addresses) the first non-loopback IPv4
// address of the machine, else the server URL's host; the port is the
// port actually served.
func advertisedEndpoint(ctx context.Context, n NetworkConfig, listen, serverURL string) (netip.AddrPort, error) {
	u, err := url.Parse(serverURL)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("server url %q: %w", serverURL, err)
	}
	port, err := net.LookupPort("tcp", u.Port())
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("server url %q: %w", serverURL, err)
	}
	if n.advertise.IsValid() {
		return netip.AddrPortFrom(n.advertise, uint16(port)), nil
	}
	host, _, _ := net.SplitHostPort(listen)
	if ip, err := netip.ParseAddr(host); err == nil && !ip.IsUnspecified() {
		return netip.AddrPortFrom(ip.Unmap(), uint16(port)), nil
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		if ip, ok := primaryIPv4(); ok {
			return netip.AddrPortFrom(ip, uint16(port)), nil
		}
	}
	ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", u.Hostname())
	if err != nil || len(ips) == 0 {
		return netip.AddrPort{}, fmt.Errorf("advertise address: resolve %q: %v (set advertise-address)", u.Hostname(), err)
	}
	return netip.AddrPortFrom(ips[0].Unmap(), uint16(port)), nil
}

// primaryIPv4 is the first IPv4 address of an up, non-loopback interface.
func primaryIPv4() (netip.Addr, bool) {
	ifaces, err := net.Interfaces()
	if err != nil {
		return netip.Addr{}, false
	}
	for _, ifc := range ifaces {
		if ifc.Flags&net.FlagUp == 0 || ifc.Flags&net.FlagLoopback != 0 {
			continue
		}
		addrs, err := ifc.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			if p, err := netip.ParsePrefix(a.String()); err == nil && p.Addr().Is4() && p.Addr().IsGlobalUnicast() {
				return p.Addr(), true
			}
		}
	}
	return netip.Addr{}, false
}

// nodePortAddress resolves proxy-nodeport-address: "none" serves no node
// ports, "" the listen host (every address when listening on all).
func nodePortAddress(key, listen string) netip.Addr {
	switch key {
	case "none":
		return netip.Addr{}
	case "":
		host, _, _ := net.SplitHostPort(listen)
		switch ip, err := netip.ParseAddr(host); {
		case host == "localhost":
			return netip.MustParseAddr("127.0.0.1")
		case err == nil && ip.Unmap().Is4():
			return ip.Unmap()
		case err == nil && ip.IsLoopback():
			return netip.MustParseAddr("127.0.0.1") // the userspace proxy is IPv4
		}
		return netip.IPv4Unspecified()
	}
	ip, _ := netip.ParseAddr(key)
	return ip
}
