package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
)

// UserspaceConfig configures a Userspace proxy.
type UserspaceConfig struct {
	// ClusterAddr says where to serve a service port's cluster traffic
	// (the cluster IP cannot be reached without iptables). nil means
	// 127.0.0.1 on a free port; see Userspace.Addr.
	ClusterAddr func(clusterIP netip.Addr, port int32, protocol corev1.Protocol) netip.AddrPort
	// NodeIP is where node ports are served (the unspecified address:
	// every address); an invalid Addr serves none.
	NodeIP netip.Addr
	// DialTimeout bounds each connection attempt to an endpoint; 0 means
	// 5s.
	DialTimeout time.Duration
	// UDPIdle ends a UDP client's session after this long without
	// traffic; 0 means 30s.
	UDPIdle time.Duration
	// Logger; nil means slog.Default().
	Logger *slog.Logger
}

// Userspace is the userspace-mode proxy: a Go TCP or UDP listener per
// service port (and one per node port) forwarding each connection, or
// each UDP client, to a ready endpoint, round-robin, or by client IP with
// sessionAffinity ClientIP. It needs no privileges. Create it with
// NewUserspace; call Sync whenever Services or EndpointSlices change.
type Userspace struct {
	cfg UserspaceConfig
	log *slog.Logger

	mu    sync.Mutex
	ports map[string]*userPort // by service port name and protocol
}

// userPort serves one service port.
type userPort struct {
	sp        atomic.Pointer[servicePort]
	listeners []io.Closer
	cluster   netip.AddrPort
	next      atomic.Uint64
	affinity  sync.Map // client IP -> *affinityEntry
	closed    chan struct{}
	wg        sync.WaitGroup
}

type affinityEntry struct {
	ep   netip.AddrPort
	last atomic.Int64 // unix nanoseconds
}

// NewUserspace returns a proxy serving nothing yet.
func NewUserspace(cfg UserspaceConfig) *Userspace {
	if cfg.ClusterAddr == nil {
		cfg.ClusterAddr = func(netip.Addr, int32, corev1.Protocol) netip.AddrPort {
			return netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), 0)
		}
	}
	if cfg.DialTimeout == 0 {
		cfg.DialTimeout = 5 * time.Second
	}
	if cfg.UDPIdle == 0 {
		cfg.UDPIdle = 30 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Userspace{cfg: cfg, log: cfg.Logger.With("component", "proxy", "mode", "userspace"), ports: map[string]*userPort{}}
}

// Addr returns where service port portName of namespace/name serves its
// cluster traffic (protocol TCP unless given).
func (u *Userspace) Addr(namespace, name, portName string, protocol ...corev1.Protocol) (netip.AddrPort, bool) {
	proto := corev1.ProtocolTCP
	if len(protocol) > 0 {
		proto = protocol[0]
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	p, ok := u.ports[namespace+"/"+name+":"+portName+"/"+string(proto)]
	if !ok {
		return netip.AddrPort{}, false
	}
	return p.cluster, true
}

// Sync serves exactly the service ports of services: new ones get
// listeners, gone ones (or ones whose cluster IP, port or node port
// changed) lose them, and every one gets its current ready endpoints.
// Errors opening listeners are joined; the other ports are still served.
func (u *Userspace) Sync(_ context.Context, services []*corev1.Service, endpointSlices []*discoveryv1.EndpointSlice) error {
	model := buildModel(services, endpointSlices)
	u.mu.Lock()
	defer u.mu.Unlock()
	seen := map[string]bool{}
	var errs []error
	for i := range model {
		sp := &model[i]
		if sp.protocol != corev1.ProtocolTCP && sp.protocol != corev1.ProtocolUDP {
			continue
		}
		key := sp.name + "/" + string(sp.protocol)
		seen[key] = true
		if p, ok := u.ports[key]; ok {
			old := p.sp.Load()
			if old.clusterIP == sp.clusterIP && old.port == sp.port && old.nodePort == sp.nodePort {
				p.sp.Store(sp)
				continue
			}
			p.close()
			delete(u.ports, key)
		}
		p, err := u.open(sp)
		if err != nil {
			errs = append(errs, fmt.Errorf("serve %s: %w", key, err))
			continue
		}
		u.ports[key] = p
	}
	for key, p := range u.ports {
		if !seen[key] {
			p.close()
			delete(u.ports, key)
		}
	}
	return errors.Join(errs...)
}

// Close stops every listener and waits for the connections to end.
func (u *Userspace) Close() error {
	u.mu.Lock()
	defer u.mu.Unlock()
	for key, p := range u.ports {
		p.close()
		delete(u.ports, key)
	}
	return nil
}

func (u *Userspace) open(sp *servicePort) (*userPort, error) {
	p := &userPort{closed: make(chan struct{})}
	p.sp.Store(sp)
	addrs := []netip.AddrPort{u.cfg.ClusterAddr(sp.clusterIP, sp.port, sp.protocol)}
	if sp.nodePort != 0 && u.cfg.NodeIP.IsValid() {
		addrs = append(addrs, netip.AddrPortFrom(u.cfg.NodeIP, uint16(sp.nodePort)))
	}
	for i, a := range addrs {
		bound, err := p.listen(u, a, sp.protocol)
		if err != nil {
			p.close()
			return nil, err
		}
		if i == 0 {
			p.cluster = bound
		}
	}
	return p, nil
}

func (p *userPort) listen(u *Userspace, a netip.AddrPort, proto corev1.Protocol) (netip.AddrPort, error) {
	if proto == corev1.ProtocolUDP {
		pc, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(a))
		if err != nil {
			return a, err
		}
		p.listeners = append(p.listeners, pc)
		p.wg.Go(func() { p.serveUDP(u, pc) })
		return pc.LocalAddr().(*net.UDPAddr).AddrPort(), nil
	}
	ln, err := net.ListenTCP("tcp4", net.TCPAddrFromAddrPort(a))
	if err != nil {
		return a, err
	}
	p.listeners = append(p.listeners, ln)
	p.wg.Go(func() { p.serveTCP(u, ln) })
	return ln.Addr().(*net.TCPAddr).AddrPort(), nil
}

func (p *userPort) close() {
	close(p.closed)
	for _, l := range p.listeners {
		l.Close()
	}
	p.wg.Wait()
}

// pick chooses the endpoint for a client: its affinity endpoint if still
// ready and not expired, else the next one round-robin. skip lists
// endpoints that already failed for this connection.
func (p *userPort) pick(client netip.Addr, skip []netip.AddrPort) (netip.AddrPort, bool) {
	sp := p.sp.Load()
	var ready []netip.AddrPort
	for _, ep := range sp.endpoints {
		if !containsAddrPort(skip, ep) {
			ready = append(ready, ep)
		}
	}
	if len(ready) == 0 {
		return netip.AddrPort{}, false
	}
	now := time.Now().UnixNano()
	if sp.affinity > 0 {
		if v, ok := p.affinity.Load(client); ok {
			e := v.(*affinityEntry)
			if now-e.last.Load() < int64(sp.affinity)*int64(time.Second) && containsAddrPort(ready, e.ep) {
				e.last.Store(now)
				return e.ep, true
			}
		}
	}
	ep := ready[p.next.Add(1)%uint64(len(ready))]
	if sp.affinity > 0 {
		e := &affinityEntry{ep: ep}
		e.last.Store(now)
		p.affinity.Store(client, e)
	}
	return ep, true
}

func containsAddrPort(list []netip.AddrPort, x netip.AddrPort) bool {
	for _, y := range list {
		if y == x {
			return true
		}
	}
	return false
}

func (p *userPort) serveTCP(u *Userspace, ln *net.TCPListener) {
	for {
		c, err := ln.AcceptTCP()
		if err != nil {
			return
		}
		p.wg.Go(func() { p.proxyTCP(u, c) })
	}
}

// proxyTCP connects c to an endpoint (trying the others if one refuses)
// and copies both ways until either side closes.
func (p *userPort) proxyTCP(u *Userspace, c *net.TCPConn) {
	defer c.Close()
	client := c.RemoteAddr().(*net.TCPAddr).AddrPort().Addr().Unmap()
	var tried []netip.AddrPort
	var backend *net.TCPConn
	for {
		ep, ok := p.pick(client, tried)
		if !ok {
			return // no (more) endpoints: the client sees the connection close
		}
		d := net.Dialer{Timeout: u.cfg.DialTimeout}
		bc, err := d.Dial("tcp4", ep.String())
		if err == nil {
			backend = bc.(*net.TCPConn)
			break
		}
		tried = append(tried, ep)
	}
	defer backend.Close()
	stop := make(chan struct{})
	go func() {
		select {
		case <-p.closed:
			c.Close()
			backend.Close()
		case <-stop:
		}
	}()
	defer close(stop)
	done := make(chan struct{})
	go func() {
		io.Copy(backend, c)
		backend.CloseWrite()
		close(done)
	}()
	io.Copy(c, backend)
	c.CloseWrite()
	<-done
}

// serveUDP forwards each client's datagrams to its endpoint over a
// connected socket per client, and the replies back, until the client is
// idle for UDPIdle.
func (p *userPort) serveUDP(u *Userspace, pc *net.UDPConn) {
	var mu sync.Mutex
	sessions := map[netip.AddrPort]*net.UDPConn{}
	buf := make([]byte, 64<<10)
	for {
		n, from, err := pc.ReadFromUDPAddrPort(buf)
		if err != nil {
			mu.Lock()
			for _, s := range sessions {
				s.Close()
			}
			mu.Unlock()
			return
		}
		mu.Lock()
		s, ok := sessions[from]
		mu.Unlock()
		if !ok {
			ep, ok := p.pick(from.Addr().Unmap(), nil)
			if !ok {
				continue
			}
			if s, err = net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(ep)); err != nil {
				continue
			}
			mu.Lock()
			sessions[from] = s
			mu.Unlock()
			p.wg.Go(func() {
				defer func() {
					mu.Lock()
					delete(sessions, from)
					mu.Unlock()
					s.Close()
				}()
				reply := make([]byte, 64<<10)
				for {
					s.SetReadDeadline(time.Now().Add(u.cfg.UDPIdle))
					m, err := s.Read(reply)
					if err != nil {
						return
					}
					pc.WriteToUDPAddrPort(reply[:m], from)
				}
			})
		}
		s.Write(buf[:n])
	}
}
