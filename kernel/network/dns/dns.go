// Package dns is Tugboat's embedded cluster DNS server: it answers the
// names of the Kubernetes DNS specification from Services and
// EndpointSlices it watches through client-go informers:
//
//   - <service>.<namespace>.svc.<zone> A: the cluster IP; for a headless
//     Service, one record per ready endpoint; an ExternalName Service is a
//     CNAME.
//   - _<port>._<proto>.<service>.<namespace>.svc.<zone> SRV: the named
//     port, pointing at the Service name (or, headless, at each endpoint's
//     name).
//   - <hostname>.<service>.<namespace>.svc.<zone> A for endpoints with a
//     hostname (StatefulSet pods), else <a-b-c-d>.<service>... after the
//     address.
//   - <a-b-c-d>.<namespace>.pod.<zone> A (CoreDNS's "pods insecure").
//
// Names in the zone that do not exist are NXDOMAIN; other names are
// forwarded to the configured upstreams, or REFUSED if there are none, so
// the server sends nothing outside unless told to. It serves UDP and TCP.
// A Server is safe for concurrent use.
package dns

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	mdns "github.com/miekg/dns"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	discoverylisters "k8s.io/client-go/listers/discovery/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/tugboat-dev/tugboat/kernel/errdefs"
)

// Defaults.
const (
	DefaultZone = "cluster.local"
	DefaultTTL  = 5 // seconds, as CoreDNS's kubernetes plugin
)

// Config configures a Server.
type Config struct {
	// Client watches Services and EndpointSlices; required.
	Client kubernetes.Interface
	// Informers, if set, is a factory (of Client) shared with other
	// readers of the node; Run starts its informers but leaves shutting it
	// down to its owner. Nil: Run has its own.
	Informers informers.SharedInformerFactory
	// Zone is the cluster domain; "" means DefaultZone.
	Zone string
	// Addr is the UDP and TCP address to serve on, e.g. "10.96.0.10:53" or
	// "127.0.0.1:0" (a free port; see Server.Addr).
	Addr string
	// Upstreams are the "host:port" servers names outside the zone are
	// forwarded to, tried in order; none means such names are REFUSED.
	Upstreams []string
	// TTL of the answers in seconds; 0 means DefaultTTL.
	TTL uint32
	// Logger; nil means slog.Default().
	Logger *slog.Logger
}

// Server is the DNS server. Create it with New and start it with Run.
type Server struct {
	cfg    Config
	zone   string // fully qualified, lowercase, with the trailing dot
	log    *slog.Logger
	client *mdns.Client

	services corelisters.ServiceLister
	slices   discoverylisters.EndpointSliceLister

	mu    sync.Mutex
	addr  string
	ready chan struct{}
}

// New validates cfg; errors wrap errdefs.ErrInvalid.
func New(cfg Config) (*Server, error) {
	if cfg.Client == nil {
		return nil, fmt.Errorf("dns: no client: %w", errdefs.ErrInvalid)
	}
	if cfg.Zone == "" {
		cfg.Zone = DefaultZone
	}
	if _, ok := mdns.IsDomainName(cfg.Zone); !ok {
		return nil, fmt.Errorf("dns: zone %q is not a domain name: %w", cfg.Zone, errdefs.ErrInvalid)
	}
	if _, _, err := net.SplitHostPort(cfg.Addr); err != nil {
		return nil, fmt.Errorf("dns: address %q: %v: %w", cfg.Addr, err, errdefs.ErrInvalid)
	}
	for _, u := range cfg.Upstreams {
		if _, err := netip.ParseAddrPort(u); err != nil {
			return nil, fmt.Errorf("dns: upstream %q: want ip:port: %w", u, errdefs.ErrInvalid)
		}
	}
	if cfg.TTL == 0 {
		cfg.TTL = DefaultTTL
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Server{cfg: cfg, zone: mdns.Fqdn(strings.ToLower(cfg.Zone)), log: cfg.Logger.With("component", "dns"),
		client: &mdns.Client{Timeout: 2 * time.Second}, ready: make(chan struct{})}, nil
}

// Ready is closed once the server answers (its caches are filled and it
// listens).
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Addr is the address the server listens on, once Ready.
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// Run fills the caches, serves until ctx ends, and returns nil then (or
// the error that stopped it).
func (s *Server) Run(ctx context.Context) error {
	factory := s.cfg.Informers
	if factory == nil {
		factory = informers.NewSharedInformerFactory(s.cfg.Client, 0)
		defer factory.Shutdown()
	}
	svcInf, epInf := factory.Core().V1().Services(), factory.Discovery().V1().EndpointSlices()
	s.services, s.slices = svcInf.Lister(), epInf.Lister()
	svcInformer, epInformer := svcInf.Informer(), epInf.Informer()
	factory.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), svcInformer.HasSynced, epInformer.HasSynced) {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("dns: caches did not sync: %w", errdefs.ErrUnavailable)
	}
	pc, ln, err := listenUDPTCP(s.cfg.Addr)
	if err != nil {
		return err
	}
	udp := &mdns.Server{PacketConn: pc, Handler: s}
	tcp := &mdns.Server{Listener: ln, Handler: s}
	s.mu.Lock()
	s.addr = pc.LocalAddr().String()
	s.mu.Unlock()
	errc := make(chan error, 2)
	go func() { errc <- udp.ActivateAndServe() }()
	go func() { errc <- tcp.ActivateAndServe() }()
	close(s.ready)
	select {
	case <-ctx.Done():
		err = nil
	case err = <-errc:
		err = fmt.Errorf("dns: serve: %w", err)
	}
	udp.Shutdown()
	tcp.Shutdown()
	return err
}

// ServeDNS answers one query.
func (s *Server) ServeDNS(w mdns.ResponseWriter, req *mdns.Msg) {
	resp := s.answer(req, w.RemoteAddr().Network() == "tcp")
	if err := w.WriteMsg(resp); err != nil {
		s.log.Debug("dns: write reply", "err", err)
	}
}

func (s *Server) answer(req *mdns.Msg, tcp bool) *mdns.Msg {
	resp := new(mdns.Msg)
	resp.SetReply(req)
	if len(req.Question) != 1 || req.Opcode != mdns.OpcodeQuery {
		resp.SetRcode(req, mdns.RcodeNotImplemented)
		return resp
	}
	q := req.Question[0]
	name := strings.ToLower(q.Name)
	if !mdns.IsSubDomain(s.zone, name) {
		return s.forward(req, tcp)
	}
	resp.Authoritative = true
	rrs, exists := s.lookup(name, q.Qtype)
	switch {
	case !exists:
		resp.Rcode = mdns.RcodeNameError
		resp.Ns = []mdns.RR{s.soa()}
	case len(rrs) == 0:
		resp.Ns = []mdns.RR{s.soa()}
	default:
		resp.Answer = rrs
	}
	if !tcp {
		resp.Truncate(udpSize(req))
	}
	return resp
}

func udpSize(req *mdns.Msg) int {
	if o := req.IsEdns0(); o != nil {
		return int(o.UDPSize())
	}
	return mdns.MinMsgSize
}

// lookup answers a name of the zone: the records of type qtype, and
// whether the name exists at all (NXDOMAIN otherwise).
func (s *Server) lookup(name string, qtype uint16) ([]mdns.RR, bool) {
	rel := strings.TrimSuffix(strings.TrimSuffix(name, s.zone), ".")
	if rel == "" {
		// The zone apex.
		if qtype == mdns.TypeSOA {
			return []mdns.RR{s.soa()}, true
		}
		return nil, true
	}
	labels := strings.Split(rel, ".")
	n := len(labels)
	switch {
	case n >= 2 && labels[n-1] == "pod":
		return s.podRecords(name, labels[:n-1], qtype)
	case n >= 1 && labels[n-1] == "svc":
		return s.svcRecords(name, labels[:n-1], qtype)
	}
	return nil, false
}

// podRecords answers <a-b-c-d>.<namespace>.pod.<zone>.
func (s *Server) podRecords(name string, labels []string, qtype uint16) ([]mdns.RR, bool) {
	if len(labels) == 1 {
		return nil, true // <namespace>.pod.<zone>
	}
	if len(labels) != 2 {
		return nil, false
	}
	ip, err := netip.ParseAddr(strings.ReplaceAll(labels[0], "-", "."))
	if err != nil || !ip.Is4() {
		return nil, false
	}
	if qtype != mdns.TypeA && qtype != mdns.TypeANY {
		return nil, true
	}
	return []mdns.RR{s.a(name, ip)}, true
}

// svcRecords answers names under svc.<zone>; labels are the labels before
// "svc", e.g. [web default] or [_http _tcp web default] or [web-0 web default].
func (s *Server) svcRecords(name string, labels []string, qtype uint16) ([]mdns.RR, bool) {
	n := len(labels)
	if n == 0 {
		return nil, true
	}
	ns := labels[n-1]
	if n == 1 {
		return nil, true // <namespace>.svc.<zone>: an empty non-terminal
	}
	svc, err := s.services.Services(ns).Get(labels[n-2])
	if err != nil {
		return nil, false
	}
	base := svc.Name + "." + svc.Namespace + ".svc." + s.zone
	switch {
	case n == 2:
		return s.serviceRecords(svc, base, qtype), true
	case n == 4 && strings.HasPrefix(labels[0], "_") && strings.HasPrefix(labels[1], "_"):
		return s.srvRecords(svc, base, name, labels[0][1:], labels[1][1:], qtype)
	case n == 3:
		return s.endpointRecords(svc, base, name, labels[0], qtype)
	}
	return nil, false
}

// serviceRecords are the records of <service>.<namespace>.svc.<zone>.
func (s *Server) serviceRecords(svc *corev1.Service, base string, qtype uint16) []mdns.RR {
	if svc.Spec.Type == corev1.ServiceTypeExternalName {
		if qtype == mdns.TypeCNAME || qtype == mdns.TypeA || qtype == mdns.TypeANY {
			return []mdns.RR{&mdns.CNAME{Hdr: s.hdr(base, mdns.TypeCNAME), Target: mdns.Fqdn(svc.Spec.ExternalName)}}
		}
		return nil
	}
	if qtype != mdns.TypeA && qtype != mdns.TypeANY {
		return nil
	}
	if svc.Spec.ClusterIP != corev1.ClusterIPNone {
		ip, err := netip.ParseAddr(svc.Spec.ClusterIP)
		if err != nil || !ip.Is4() {
			return nil
		}
		return []mdns.RR{s.a(base, ip)}
	}
	var rrs []mdns.RR
	for _, ep := range s.endpoints(svc) {
		rrs = append(rrs, s.a(base, ep.ip))
	}
	return rrs
}

// srvRecords are the records of _<port>._<proto>.<service>...
func (s *Server) srvRecords(svc *corev1.Service, base, name, port, proto string, qtype uint16) ([]mdns.RR, bool) {
	var sp *corev1.ServicePort
	for i := range svc.Spec.Ports {
		p := &svc.Spec.Ports[i]
		if p.Name == port && strings.EqualFold(string(p.Protocol), proto) {
			sp = p
		}
	}
	if sp == nil {
		return nil, false
	}
	if qtype != mdns.TypeSRV && qtype != mdns.TypeANY {
		return nil, true
	}
	if svc.Spec.ClusterIP != corev1.ClusterIPNone {
		return []mdns.RR{&mdns.SRV{Hdr: s.hdr(name, mdns.TypeSRV), Priority: 0, Weight: 100, Port: uint16(sp.Port), Target: base}}, true
	}
	var rrs []mdns.RR
	eps := s.endpoints(svc)
	for _, ep := range eps {
		if p, ok := ep.ports[port]; ok {
			w := uint16(100 / max(1, len(eps)))
			rrs = append(rrs, &mdns.SRV{Hdr: s.hdr(name, mdns.TypeSRV), Weight: w, Port: uint16(p), Target: ep.label + "." + base})
		}
	}
	return rrs, true
}

// endpointRecords are the records of <endpoint>.<service>... for a
// headless Service.
func (s *Server) endpointRecords(svc *corev1.Service, base, name, label string, qtype uint16) ([]mdns.RR, bool) {
	if svc.Spec.ClusterIP != corev1.ClusterIPNone {
		return nil, false
	}
	for _, ep := range s.endpoints(svc) {
		if ep.label != label {
			continue
		}
		if qtype != mdns.TypeA && qtype != mdns.TypeANY {
			return nil, true
		}
		return []mdns.RR{s.a(name, ep.ip)}, true
	}
	return nil, false
}

// endpoint is one ready endpoint address of a Service.
type endpoint struct {
	ip    netip.Addr
	label string           // hostname, or the dashed address
	ports map[string]int32 // by port name
}

// endpoints lists svc's ready IPv4 endpoints, sorted by address.
func (s *Server) endpoints(svc *corev1.Service) []endpoint {
	sel := labels.SelectorFromSet(labels.Set{discoveryv1.LabelServiceName: svc.Name})
	list, err := s.slices.EndpointSlices(svc.Namespace).List(sel)
	if err != nil {
		return nil
	}
	var out []endpoint
	for _, sl := range list {
		if sl.AddressType != discoveryv1.AddressTypeIPv4 {
			continue
		}
		ports := map[string]int32{}
		for _, p := range sl.Ports {
			if p.Port != nil {
				name := ""
				if p.Name != nil {
					name = *p.Name
				}
				ports[name] = *p.Port
			}
		}
		for _, ep := range sl.Endpoints {
			if ep.Conditions.Ready != nil && !*ep.Conditions.Ready {
				continue
			}
			for _, a := range ep.Addresses {
				ip, err := netip.ParseAddr(a)
				if err != nil || !ip.Is4() {
					continue
				}
				label := strings.ReplaceAll(ip.String(), ".", "-")
				if ep.Hostname != nil && *ep.Hostname != "" {
					label = strings.ToLower(*ep.Hostname)
				}
				out = append(out, endpoint{ip: ip, label: label, ports: ports})
			}
		}
	}
	slices.SortFunc(out, func(a, b endpoint) int { return a.ip.Compare(b.ip) })
	return slices.CompactFunc(out, func(a, b endpoint) bool { return a.ip == b.ip })
}

// forward sends a query outside the zone to the upstreams, or refuses it.
func (s *Server) forward(req *mdns.Msg, tcp bool) *mdns.Msg {
	if len(s.cfg.Upstreams) == 0 {
		resp := new(mdns.Msg)
		resp.SetRcode(req, mdns.RcodeRefused)
		return resp
	}
	c := *s.client
	if tcp {
		c.Net = "tcp"
	}
	var errs []error
	for _, u := range s.cfg.Upstreams {
		resp, _, err := c.Exchange(req, u)
		if err == nil {
			return resp
		}
		errs = append(errs, err)
	}
	s.log.Debug("dns: no upstream answered", "name", req.Question[0].Name, "err", errors.Join(errs...))
	resp := new(mdns.Msg)
	resp.SetRcode(req, mdns.RcodeServerFailure)
	return resp
}

func (s *Server) hdr(name string, t uint16) mdns.RR_Header {
	return mdns.RR_Header{Name: name, Rrtype: t, Class: mdns.ClassINET, Ttl: s.cfg.TTL}
}

func (s *Server) a(name string, ip netip.Addr) mdns.RR {
	return &mdns.A{Hdr: s.hdr(name, mdns.TypeA), A: ip.AsSlice()}
}

func (s *Server) soa() mdns.RR {
	return &mdns.SOA{Hdr: s.hdr(s.zone, mdns.TypeSOA), Ns: "ns.dns." + s.zone, Mbox: "hostmaster." + s.zone,
		Serial: uint32(time.Now().Unix()), Refresh: 7200, Retry: 1800, Expire: 86400, Minttl: s.cfg.TTL}
}

// listenUDPTCP listens on addr for UDP and on the same port for TCP. With
// port 0 the kernel picks the UDP port, and that port may already be taken
// for TCP by an unrelated socket, so a free pair is looked for a few times.
func listenUDPTCP(addr string) (net.PacketConn, net.Listener, error) {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, nil, fmt.Errorf("dns: listen address %q: %w", addr, errdefs.ErrInvalid)
	}
	tries := 1
	if port == "0" {
		tries = 20
	}
	for i := 0; ; i++ {
		pc, err := net.ListenPacket("udp", addr)
		if err != nil {
			return nil, nil, fmt.Errorf("dns: listen udp: %w", err)
		}
		ln, err := net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			return pc, ln, nil
		}
		pc.Close()
		if i+1 >= tries || !errors.Is(err, syscall.EADDRINUSE) {
			return nil, nil, fmt.Errorf("dns: listen tcp: %w", err)
		}
	}
}
