package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/tugboat-dev/tugboat/kernel/errdefs"
	"github.com/tugboat-dev/tugboat/kernel/network/bridge"
	"github.com/tugboat-dev/tugboat/kernel/network/proxy"
)

// The network benchmark runs entirely inside network namespaces it
// creates (a "node" namespace with a bridge, a server pod and a client
// pod); it never programs the machine's own namespace and sends nothing
// outside those namespaces.

type networkConfig struct {
	services, endpoints int
	rounds              int
	changes             int
	duration            time.Duration
	clients             int
	backends            []string
}

func parseNetworkFlags(args []string) (networkConfig, error) {
	var cfg networkConfig
	fs := flag.NewFlagSet("tugbench network", flag.ContinueOnError)
	fs.IntVar(&cfg.services, "services", 1000, "services in the iptables rules")
	fs.IntVar(&cfg.endpoints, "endpoints", 10, "endpoints per service")
	fs.IntVar(&cfg.rounds, "rounds", 3, "rounds (a fresh namespace and full sync each); RESULT reports medians")
	fs.IntVar(&cfg.changes, "changes", 10, "one-endpoint changes synced incrementally per round")
	fs.DurationVar(&cfg.duration, "duration", 2*time.Second, "measured time of each request-rate run")
	fs.IntVar(&cfg.clients, "clients", 2, "concurrent request loops in the client pod")
	backends := fs.String("backends", "", "iptables backends to measure, e.g. legacy,nft; the first is the one RESULT reports; empty means the one the proxy picks on a fresh node, then the other")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if *backends == "" {
		return cfg, validateNetworkConfig(cfg)
	}
	for b := range strings.SplitSeq(*backends, ",") {
		if b = strings.TrimSpace(b); b != "legacy" && b != "nft" {
			return cfg, fmt.Errorf("backend %q: want legacy or nft: %w", b, errdefs.ErrInvalid)
		}
		cfg.backends = append(cfg.backends, strings.TrimSpace(b))
	}
	return cfg, validateNetworkConfig(cfg)
}

func validateNetworkConfig(cfg networkConfig) error {
	if cfg.services < 1 || cfg.endpoints < 1 || cfg.rounds < 1 || cfg.changes < 1 || cfg.clients < 1 || cfg.duration <= 0 {
		return fmt.Errorf("all counts and the duration must be positive: %w", errdefs.ErrInvalid)
	}
	if cfg.services > 60000 || cfg.endpoints > 250 {
		return fmt.Errorf("at most 60000 services of at most 250 endpoints: %w", errdefs.ErrInvalid)
	}
	return nil
}

func runNetwork(args []string) error {
	cfg, err := parseNetworkFlags(args)
	if err != nil {
		return err
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("the network benchmark needs root (network namespaces, iptables): %w", errdefs.ErrUnavailable)
	}
	if len(cfg.backends) == 0 {
		if cfg.backends, err = autoBackends(); err != nil {
			return err
		}
	}
	fulls, incs := map[string][]float64{}, map[string][]float64{}
	var direct, viaVIP, directKeep, viaVIPKeep, nodeDirect, nodeVIP []float64
	for round := range cfg.rounds {
		for i, backend := range cfg.backends {
			r, err := networkRound(cfg, backend, i == 0)
			if err != nil {
				return fmt.Errorf("round %d, %s: %w", round+1, backend, err)
			}
			fmt.Printf("round %d, %-6s: full sync %7.1f ms, one-endpoint change %5.1f ms (median of %d)", round+1, backend, r.full, r.inc, cfg.changes)
			if i == 0 {
				fmt.Printf("; req/s new conn: direct %.0f, cluster IP %.0f; kept alive: direct %.0f, cluster IP %.0f",
					r.direct, r.viaVIP, r.directKeep, r.viaVIPKeep)
				direct, viaVIP = append(direct, r.direct), append(viaVIP, r.viaVIP)
				directKeep, viaVIPKeep = append(directKeep, r.directKeep), append(viaVIPKeep, r.viaVIPKeep)
				nodeDirect, nodeVIP = append(nodeDirect, r.nodeDirect), append(nodeVIP, r.nodeVIP)
			}
			fmt.Println()
			fulls[backend], incs[backend] = append(fulls[backend], r.full), append(incs[backend], r.inc)
		}
	}
	fmt.Printf("\n%-52s %12s\n", "measure (median of rounds)", "value")
	for _, backend := range cfg.backends {
		fmt.Printf("%-52s %12.1f\n", fmt.Sprintf("iptables-%s full sync, %d svc x %d ep (ms)", backend, cfg.services, cfg.endpoints), medianFloat(fulls[backend]))
		fmt.Printf("%-52s %12.1f\n", fmt.Sprintf("iptables-%s one-endpoint change (ms)", backend), medianFloat(incs[backend]))
	}
	d, v := medianFloat(direct), medianFloat(viaVIP)
	fmt.Printf("%-52s %12.0f\n", "pod -> pod IP, new connection per request (req/s)", d)
	fmt.Printf("%-52s %12.0f\n", "pod -> cluster IP, new connection per request (req/s)", v)
	fmt.Printf("%-52s %12.0f\n", "pod -> pod IP, kept-alive connection (req/s)", medianFloat(directKeep))
	fmt.Printf("%-52s %12.0f\n", "pod -> cluster IP, kept-alive connection (req/s)", medianFloat(viaVIPKeep))
	fmt.Printf("%-52s %12.0f\n", "node -> pod IP, new connection per request (req/s)", medianFloat(nodeDirect))
	fmt.Printf("%-52s %12.0f\n", "node -> cluster IP, new connection per request (req/s)", medianFloat(nodeVIP))
	first := cfg.backends[0]
	fmt.Printf("RESULT iptables_sync_1k_svc_ms=%.0f iptables_incremental_ms=%.1f clusterip_vs_direct=%.2f\n",
		medianFloat(fulls[first]), medianFloat(incs[first]), v/d)
	return nil
}

type networkResult struct {
	full, inc float64 // ms
	// requests per second from a pod, new connection per request or kept
	// alive, and from the node itself (new connections)
	direct, viaVIP, directKeep, viaVIPKeep, nodeDirect, nodeVIP float64
}

// networkRound builds a fresh node namespace, syncs the rules, changes
// endpoints one at a time, and compares request rates.
func networkRound(cfg networkConfig, backend string, rates bool) (networkResult, error) {
	var res networkResult
	dir, err := os.MkdirTemp("", "tugbench-network-")
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(dir)
	host := filepath.Join(dir, "node")
	if err := bridge.NewNetNS(host); err != nil {
		return res, err
	}
	defer bridge.DeleteNetNS(host)
	if err := linkUp(host, "lo"); err != nil {
		return res, err
	}
	bn, err := bridge.New(bridge.Config{PodCIDR: netip.MustParsePrefix("10.244.0.0/24"), StateDir: filepath.Join(dir, "ipam"),
		NetNSDir: filepath.Join(dir, "pods"), HostNetNS: host, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return res, err
	}
	defer bn.Close()
	server, err := bn.Setup("server")
	if err != nil {
		return res, err
	}
	defer bn.Teardown("server")
	client, err := bn.Setup("client")
	if err != nil {
		return res, err
	}
	defer bn.Teardown("client")
	// The service leads to port 8080; direct requests go to 8081, so that
	// the two kinds never share a connection tuple (a NATed connection
	// whose tuple is still held by a direct one in TIME_WAIT would be
	// dropped by conntrack and retried a second later).
	for _, port := range []uint16{8080, 8081} {
		ln, err := listenIn(server.NetNS, netip.AddrPortFrom(server.IP, port))
		if err != nil {
			return res, err
		}
		defer ln.Close()
		go servePong(ln)
	}

	p, err := proxy.NewIptables(proxy.IptablesConfig{NetNS: host, ClusterCIDR: netip.MustParsePrefix("10.244.0.0/16"),
		Backend: backend, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return res, err
	}
	defer p.Close()
	svcs, slices := benchServices(cfg, server.IP)
	ctx := context.Background()
	start := time.Now()
	if err := p.Sync(ctx, svcs, slices); err != nil {
		return res, fmt.Errorf("full sync: %w", err)
	}
	res.full = msFloat(time.Since(start))
	var incs []float64
	for i := range cfg.changes {
		// One endpoint of one service (not the measured one) moves.
		s := slices[(i*7+1)%len(slices)].DeepCopy()
		s.Endpoints[0].Addresses[0] = fmt.Sprintf("10.%d.%d.%d", 200+i/65536%50, i/256%256, i%256)
		slices[(i*7+1)%len(slices)] = s
		start := time.Now()
		if err := p.Sync(ctx, svcs, slices); err != nil {
			return res, fmt.Errorf("incremental sync: %w", err)
		}
		incs = append(incs, msFloat(time.Since(start)))
	}
	res.inc = medianFloat(incs)
	if !rates {
		return res, nil
	}

	vip := netip.MustParseAddrPort("10.96.0.10:80")
	pod := netip.AddrPortFrom(server.IP, 8081)
	// The node's own traffic to the service CIDR needs a route (a real
	// node has a default route; this one must not lead anywhere).
	if err := routeServiceCIDR(host); err != nil {
		return res, err
	}
	// Warm up both paths, then alternate.
	for _, keep := range []bool{false, true} {
		for _, to := range []netip.AddrPort{pod, vip} {
			if _, err := requestRate(client.NetNS, to, cfg.clients, cfg.duration/8, keep); err != nil {
				return res, fmt.Errorf("warm-up to %s: %w", to, err)
			}
		}
	}
	for _, m := range []struct {
		direct, vip *float64
		from        string
		keep        bool
	}{{&res.direct, &res.viaVIP, client.NetNS, false}, {&res.directKeep, &res.viaVIPKeep, client.NetNS, true},
		{&res.nodeDirect, &res.nodeVIP, host, false}} {
		if *m.direct, *m.vip, err = pairRate(m.from, pod, vip, cfg, m.keep); err != nil {
			return res, err
		}
	}
	return res, nil
}

// benchServices makes cfg.services ClusterIP services of cfg.endpoints
// endpoints each (addresses that exist nowhere; no traffic goes to them),
// plus one at 10.96.0.10:80 served by the real pod.
func benchServices(cfg networkConfig, pod netip.Addr) ([]*corev1.Service, []*discoveryv1.EndpointSlice) {
	var svcs []*corev1.Service
	var eps []*discoveryv1.EndpointSlice
	add := func(name, ip string, addrs []string, port int32) {
		svcs = append(svcs, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name},
			Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP, ClusterIP: ip,
				Ports: []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}}}})
		s := &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name + "-x",
			Labels: map[string]string{discoveryv1.LabelServiceName: name}}, AddressType: discoveryv1.AddressTypeIPv4,
			Ports: []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To(port), Protocol: ptr.To(corev1.ProtocolTCP)}}}
		for _, a := range addrs {
			s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{Addresses: []string{a}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}})
		}
		eps = append(eps, s)
	}
	for i := range cfg.services - 1 {
		var addrs []string
		for j := range cfg.endpoints {
			addrs = append(addrs, fmt.Sprintf("10.%d.%d.%d", 128+i/256%64, i%256, j+1))
		}
		add(fmt.Sprintf("svc-%05d", i), fmt.Sprintf("10.97.%d.%d", i/250, i%250+1), addrs, 8080)
	}
	// Named to sort mid-list: iptables matches KUBE-SERVICES in order, so
	// a new connection to it walks half the services (the average case).
	add(fmt.Sprintf("svc-%05d-web", (cfg.services-1)/2), "10.96.0.10", []string{pod.String()}, 8080)
	return svcs, eps
}

func linkUp(ns, name string) error {
	h, err := netns.GetFromPath(ns)
	if err != nil {
		return err
	}
	defer h.Close()
	nl, err := netlink.NewHandleAt(h)
	if err != nil {
		return err
	}
	defer nl.Close()
	l, err := nl.LinkByName(name)
	if err != nil {
		return err
	}
	return nl.LinkSetUp(l)
}

func routeServiceCIDR(ns string) error {
	h, err := netns.GetFromPath(ns)
	if err != nil {
		return err
	}
	defer h.Close()
	nl, err := netlink.NewHandleAt(h)
	if err != nil {
		return err
	}
	defer nl.Close()
	br, err := nl.LinkByName(bridge.DefaultBridge)
	if err != nil {
		return err
	}
	return nl.RouteAdd(&netlink.Route{LinkIndex: br.Attrs().Index, Dst: &net.IPNet{IP: net.IPv4(10, 96, 0, 0), Mask: net.CIDRMask(12, 32)}})
}

func listenIn(ns string, addr netip.AddrPort) (net.Listener, error) {
	var ln net.Listener
	err := bridge.InNetNS(ns, func() error {
		var err error
		ln, err = net.Listen("tcp4", addr.String())
		return err
	})
	return ln, err
}

// servePong answers each line with "pong". After "ping" it closes the
// connection (the server closes first, so TIME_WAIT stays on its side and
// the client never runs out of ports); after "keep" it waits for the next.
func servePong(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			r := bufio.NewReader(c)
			for {
				l, err := r.ReadString('\n')
				if err != nil {
					return
				}
				if _, err := c.Write([]byte("pong\n")); err != nil || l != "keep\n" {
					return
				}
			}
		}()
	}
}

// pairRate measures requests to a and to b from ns in alternating slices
// (so that load changes on the machine affect both alike) and returns
// both rates.
func pairRate(ns string, a, b netip.AddrPort, cfg networkConfig, keep bool) (float64, float64, error) {
	const slices = 4
	var ra, rb float64
	for range slices {
		x, err := requestRate(ns, a, cfg.clients, cfg.duration/slices, keep)
		if err != nil {
			return 0, 0, fmt.Errorf("requests to %s: %w", a, err)
		}
		y, err := requestRate(ns, b, cfg.clients, cfg.duration/slices, keep)
		if err != nil {
			return 0, 0, fmt.Errorf("requests to %s: %w", b, err)
		}
		ra, rb = ra+x/slices, rb+y/slices
	}
	return ra, rb, nil
}

// requestRate runs clients loops in namespace ns making requests to to
// for d, each on a new connection or (keep) all on one per loop, and
// returns requests per second.
func requestRate(ns string, to netip.AddrPort, clients int, d time.Duration, keep bool) (float64, error) {
	var total atomic.Int64
	var wg sync.WaitGroup
	errs := make([]error, clients)
	deadline := time.Now().Add(d)
	for i := range clients {
		wg.Go(func() {
			errs[i] = bridge.InNetNS(ns, func() error {
				n, err := requestLoop(to, deadline, keep)
				total.Add(n)
				return err
			})
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return 0, err
	}
	return float64(total.Load()) / d.Seconds(), nil
}

func requestLoop(to netip.AddrPort, deadline time.Time, keep bool) (int64, error) {
	var n int64
	var c net.Conn
	var r *bufio.Reader
	defer func() {
		if c != nil {
			c.Close()
		}
	}()
	req := []byte("ping\n")
	if keep {
		req = []byte("keep\n")
	}
	for time.Now().Before(deadline) {
		if c == nil {
			var err error
			if c, err = net.DialTimeout("tcp4", to.String(), 5*time.Second); err != nil {
				return n, err
			}
			c.SetDeadline(deadline.Add(5 * time.Second))
			r = bufio.NewReader(c)
		}
		if _, err := c.Write(req); err != nil {
			return n, err
		}
		if l, err := r.ReadString('\n'); err != nil || l != "pong\n" {
			return n, fmt.Errorf("read reply %q: %w", l, err)
		}
		n++
		if !keep {
			c.Close()
			c = nil
		}
	}
	return n, nil
}

// autoBackends is the backend the proxy picks in a fresh namespace, then
// the other.
func autoBackends() ([]string, error) {
	dir, err := os.MkdirTemp("", "tugbench-network-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	ns := filepath.Join(dir, "pick")
	if err := bridge.NewNetNS(ns); err != nil {
		return nil, err
	}
	defer bridge.DeleteNetNS(ns)
	p, err := proxy.NewIptables(proxy.IptablesConfig{NetNS: ns, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return nil, err
	}
	if p.Backend() == "nft" {
		return []string{"nft", "legacy"}, nil
	}
	return []string{"legacy", "nft"}, nil
}
