package apiserver

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/tugboat-dev/tugboat/kernel/errdefs"
	"github.com/tugboat-dev/tugboat/kernel/store"
)

// Service address allocation: ClusterIPs from the service CIDR and node
// ports from the node port range, unique across all Services.
//
// The allocator's state is derived from the stored Services, never stored
// separately: at the first Service write it lists them, then follows a
// store watch (of the whole keyspace, so that its progress covers every
// write), so every way a Service disappears (delete, namespace deletion, a
// finalizer's last update) releases its addresses. A write in flight
// holds a reservation from the moment its addresses are chosen until the
// watch has applied the write (or until the write failed), so two
// concurrent creates can never both get one address, and an address is
// never handed out while a stored Service still holds it. See
// RATIONALE.md ("(API) Why derive service address allocation from a
// watch?").
//
// The state is per server process: two API servers over one store (HA,
// later) would need store-backed allocation objects (Kubernetes'
// IPAddress); the reservation API below is the seam for that.

// DefaultServiceCIDR is the ClusterIP range when Config.ServiceCIDR is
// unset (kubeadm's default --service-cidr).
var DefaultServiceCIDR = netip.MustParsePrefix("10.96.0.0/12")

// DefaultNodePorts is the node port range when Config.NodePorts is unset.
var DefaultNodePorts = PortRange{Min: 30000, Max: 32767}

// PortRange is an inclusive range of ports.
type PortRange struct {
	Min, Max int32
}

// String formats the range as Kubernetes does ("30000-32767").
func (r PortRange) String() string { return fmt.Sprintf("%d-%d", r.Min, r.Max) }

// Contains reports whether p lies in the range.
func (r PortRange) Contains(p int32) bool { return p >= r.Min && p <= r.Max }

// ParsePortRange parses "min-max" (or a single port); errors wrap
// errdefs.ErrInvalid.
func ParsePortRange(s string) (PortRange, error) {
	lo, hi, ok := strings.Cut(strings.TrimSpace(s), "-")
	if !ok {
		hi = lo
	}
	a, err1 := strconv.ParseInt(strings.TrimSpace(lo), 10, 32)
	b, err2 := strconv.ParseInt(strings.TrimSpace(hi), 10, 32)
	r := PortRange{Min: int32(a), Max: int32(b)}
	if err1 != nil || err2 != nil {
		return r, fmt.Errorf("port range %q: want min-max: %w", s, errdefs.ErrInvalid)
	}
	return r, r.validate()
}

func (r PortRange) validate() error {
	if r.Min < 1 || r.Max > 65535 || r.Min > r.Max {
		return fmt.Errorf("port range %s: want 1 <= min <= max <= 65535: %w", r, errdefs.ErrInvalid)
	}
	return nil
}

// validateServiceCIDR checks a service CIDR: IPv4 (IPv6 services are not
// served yet), masked, with room for at least a few services.
func validateServiceCIDR(p netip.Prefix) error {
	switch {
	case !p.IsValid() || !p.Addr().Is4():
		return fmt.Errorf("service CIDR %s: want an IPv4 prefix: %w", p, errdefs.ErrInvalid)
	case p.Masked() != p:
		return fmt.Errorf("service CIDR %s: host bits set (want %s): %w", p, p.Masked(), errdefs.ErrInvalid)
	case p.Bits() > 29 || p.Bits() < 8:
		return fmt.Errorf("service CIDR %s: want a prefix length between /8 and /29: %w", p, errdefs.ErrInvalid)
	}
	return nil
}

// Allocation waits: allocWaitMax for the allocator to (re)build its state
// from the store (then the write fails with 503), allocFreshWait for its
// watch to catch up with the writes acknowledged before the request.
const (
	allocWaitMax   = 10 * time.Second
	allocFreshWait = time.Second
)

// servicesPrefix is the store prefix of all Services.
var servicesPrefix = store.Prefix("services", "")

// serviceAllocator tracks which ClusterIPs and node ports are taken. Its
// run goroutine is the only writer of the committed state; reservations
// come from request goroutines. It is safe for concurrent use.
type serviceAllocator struct {
	st    store.Store
	log   *slog.Logger
	cidr  netip.Prefix
	base  uint32 // the CIDR's network address
	size  uint32 // addresses in the CIDR
	ports PortRange

	mu sync.Mutex
	// live is true while the committed state follows the store.
	live bool
	// changed, when not nil, is closed at the next change of live or rev
	// (created by waiters only).
	changed chan struct{}
	// rev is the watch progress: the committed state reflects every write
	// up to rev.
	rev int64
	// held maps a service key to the addresses its stored version holds;
	// ipOwner and portOwner are the inverse.
	held      map[string]svcAddrs
	ipOwner   map[uint32]string
	portOwner map[int32]string
	// pending are the reservations of writes not yet seen by the watch.
	pending []*svcReservation

	once    sync.Once
	started atomic.Bool
	done    chan struct{}
}

// svcAddrs are the addresses one Service holds.
type svcAddrs struct {
	ips   []uint32
	ports []int32
}

// svcReservation holds addresses for one write of one Service until the
// watch has applied it. Settle it exactly once.
type svcReservation struct {
	a     *serviceAllocator
	key   string
	addrs svcAddrs
	// rev is the revision of the write, once it succeeded.
	rev int64
}

func newServiceAllocator(st store.Store, log *slog.Logger, cidr netip.Prefix, ports PortRange) *serviceAllocator {
	b := cidr.Addr().As4()
	return &serviceAllocator{
		st: st, log: log, cidr: cidr, ports: ports,
		base: binary.BigEndian.Uint32(b[:]), size: uint32(1) << (32 - cidr.Bits()),
		done: make(chan struct{}),
	}
}

// start builds the state and keeps it current until ctx ends; only the
// first call does anything. The server starts its allocator at the first
// Service write, so a server without Services runs no extra watch. wait
// returns once a started allocator has stopped.
func (a *serviceAllocator) start(ctx context.Context) {
	a.once.Do(func() {
		a.started.Store(true)
		go a.run(ctx)
	})
}

func (a *serviceAllocator) wait() {
	if a.started.Load() {
		<-a.done
	}
}

func (a *serviceAllocator) run(ctx context.Context) {
	defer close(a.done)
	backoff := cacheRetryMin
	for {
		rev, err := a.fill(ctx)
		if err == nil {
			backoff = cacheRetryMin
			err = a.follow(ctx, rev)
		}
		a.setLive(false)
		if ctx.Err() != nil {
			return
		}
		if errors.Is(err, errdefs.ErrGone) || errors.Is(err, errdefs.ErrTooSlow) {
			a.log.Info("service allocator lost its watch; relisting", "err", err)
			continue
		}
		a.log.Warn("service allocator stopped; retrying", "err", err, "backoff", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, cacheRetryMax)
	}
}

// fill rebuilds the committed state from a consistent list of all
// Services and returns the list's revision.
func (a *serviceAllocator) fill(ctx context.Context) (int64, error) {
	held := map[string]svcAddrs{}
	prefix := servicesPrefix
	opts := store.ListOptions{Limit: cacheFillPage}
	for {
		page, err := a.st.List(ctx, prefix, opts)
		if err != nil {
			return 0, fmt.Errorf("list services: %w", err)
		}
		for _, kv := range page.KVs {
			held[kv.Key] = a.decode(kv)
		}
		opts.Revision = page.Revision
		if !page.More {
			break
		}
		opts.StartKey = page.KVs[len(page.KVs)-1].Key + "\x00"
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.held = map[string]svcAddrs{}
	a.ipOwner = map[uint32]string{}
	a.portOwner = map[int32]string{}
	for key, addrs := range held {
		a.hold(key, addrs)
	}
	a.progress(opts.Revision)
	a.live = true
	a.notify()
	return opts.Revision, nil
}

// follow applies the store's events after rev until the watch ends. It
// watches the whole store, not only Services, so that its progress says
// how far it has caught up with every acknowledged write.
func (a *serviceAllocator) follow(ctx context.Context, rev int64) error {
	w, err := a.st.Watch(ctx, store.Root, rev)
	if err != nil {
		return fmt.Errorf("watch store: %w", err)
	}
	defer w.Stop()
	for ev := range w.Events() {
		a.apply(ev)
	}
	if err := w.Err(); err != nil {
		return err
	}
	if ctx.Err() != nil {
		return nil
	}
	return fmt.Errorf("watch store ended: %w", errdefs.ErrUnavailable)
}

// apply applies one event; events of other resources only advance the
// progress.
func (a *serviceAllocator) apply(ev store.Event) {
	var addrs svcAddrs
	svc := ev.Type != store.Bookmark && strings.HasPrefix(ev.KV.Key, servicesPrefix)
	if svc && ev.Type != store.Deleted {
		addrs = a.decode(ev.KV)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if svc {
		a.release(ev.KV.Key)
		if ev.Type != store.Deleted {
			a.hold(ev.KV.Key, addrs)
		}
	}
	a.progress(ev.Revision)
}

// decode reads the addresses of a stored Service; a value that does not
// decode holds nothing (and is logged).
func (a *serviceAllocator) decode(kv store.KV) svcAddrs {
	var v struct {
		Spec struct {
			ClusterIPs []string `json:"clusterIPs"`
			Ports      []struct {
				NodePort int32 `json:"nodePort"`
			} `json:"ports"`
		} `json:"spec"`
	}
	var out svcAddrs
	if err := json.Unmarshal(kv.Value, &v); err != nil {
		a.log.Warn("service allocator cannot decode a stored service", "key", kv.Key, "err", err)
		return out
	}
	for _, s := range v.Spec.ClusterIPs {
		if ip, err := netip.ParseAddr(s); err == nil && ip.Is4() {
			out.ips = append(out.ips, ipNum(ip))
		}
	}
	for _, p := range v.Spec.Ports {
		if p.NodePort != 0 && !slices.Contains(out.ports, p.NodePort) {
			out.ports = append(out.ports, p.NodePort)
		}
	}
	return out
}

// hold records key's committed addresses; a.mu is held.
func (a *serviceAllocator) hold(key string, addrs svcAddrs) {
	a.held[key] = addrs
	for _, ip := range addrs.ips {
		if o, ok := a.ipOwner[ip]; ok && o != key {
			a.log.Warn("cluster IP held by two services", "ip", ipString(ip), "service", key, "other", o)
		}
		a.ipOwner[ip] = key
	}
	for _, p := range addrs.ports {
		if o, ok := a.portOwner[p]; ok && o != key {
			a.log.Warn("node port held by two services", "port", p, "service", key, "other", o)
		}
		a.portOwner[p] = key
	}
}

// release forgets key's committed addresses; a.mu is held.
func (a *serviceAllocator) release(key string) {
	addrs, ok := a.held[key]
	if !ok {
		return
	}
	delete(a.held, key)
	for _, ip := range addrs.ips {
		if a.ipOwner[ip] == key {
			delete(a.ipOwner, ip)
		}
	}
	for _, p := range addrs.ports {
		if a.portOwner[p] == key {
			delete(a.portOwner, p)
		}
	}
}

// progress advances the watch progress and drops the reservations of the
// writes it covers; a.mu is held.
func (a *serviceAllocator) progress(rev int64) {
	if rev > a.rev {
		a.rev = rev
		a.notify()
	}
	a.pending = slices.DeleteFunc(a.pending, func(r *svcReservation) bool { return r.rev != 0 && r.rev <= a.rev })
}

func (a *serviceAllocator) setLive(live bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.live = live
	a.notify()
}

// notify wakes the waiters for live; a.mu is held.
func (a *serviceAllocator) notify() {
	if a.changed != nil {
		close(a.changed)
		a.changed = nil
	}
}

// lockFresh locks a.mu once the state follows the store and reflects
// every write up to rev. It waits at most allocWaitMax for the state to
// be (re)built (then 503) and allocFreshWait for the watch to reach rev
// (then it goes ahead: a lagging state only refuses more, never
// double-allocates), or until ctx ends.
func (a *serviceAllocator) lockFresh(ctx context.Context, rev int64) error {
	start := time.Now()
	timer := time.NewTimer(allocFreshWait)
	defer timer.Stop()
	for {
		a.mu.Lock()
		if a.live && (a.rev >= rev || time.Since(start) >= allocFreshWait) {
			return nil
		}
		if time.Since(start) >= allocWaitMax {
			a.mu.Unlock()
			return fmt.Errorf("service address allocator is not ready: %w", errdefs.ErrUnavailable)
		}
		if a.changed == nil {
			a.changed = make(chan struct{})
		}
		ch := a.changed
		a.mu.Unlock()
		select {
		case <-ch:
		case <-timer.C:
			timer.Reset(allocFreshWait)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// ipFree reports whether key may take ip: no other stored Service holds
// it and no other key's write in flight reserved it; a.mu is held.
func (a *serviceAllocator) ipFree(key string, ip uint32) bool {
	if o, ok := a.ipOwner[ip]; ok && o != key {
		return false
	}
	for _, r := range a.pending {
		if r.key != key && slices.Contains(r.addrs.ips, ip) {
			return false
		}
	}
	return true
}

// portFree is ipFree for node ports; a.mu is held.
func (a *serviceAllocator) portFree(key string, p int32) bool {
	if o, ok := a.portOwner[p]; ok && o != key {
		return false
	}
	for _, r := range a.pending {
		if r.key != key && slices.Contains(r.addrs.ports, p) {
			return false
		}
	}
	return true
}

// settle ends a reservation: rev is the revision of the successful write,
// or 0 if nothing was written (the addresses are free again at once).
// Settling a nil reservation does nothing.
func (r *svcReservation) settle(rev int64) {
	if r == nil {
		return
	}
	a := r.a
	a.mu.Lock()
	defer a.mu.Unlock()
	if rev == 0 || rev <= a.rev {
		a.pending = slices.DeleteFunc(a.pending, func(p *svcReservation) bool { return p == r })
		return
	}
	r.rev = rev
}

// reserve fills in svc's cluster IP and node ports (keeping those prev,
// the stored version on update, already holds) and reserves the new ones
// until the write is settled. A taken or out-of-range address requested
// by the client is 422 Invalid; an exhausted range is 500, as in
// Kubernetes. The reservation is nil when nothing new was needed.
//
// Before choosing, reserve waits (briefly) until the watch has applied
// every write acknowledged before the call, so a delete acknowledged to a
// client frees its addresses for that client's next request.
func (a *serviceAllocator) reserve(ctx context.Context, key string, svc, prev *corev1.Service) (*svcReservation, error) {
	if svc.Spec.Type == corev1.ServiceTypeExternalName {
		return nil, nil
	}
	if err := a.lockFresh(ctx, a.st.Revision()); err != nil {
		return nil, err
	}
	defer a.mu.Unlock()
	r := &svcReservation{a: a, key: key}
	if err := a.reserveIP(r, svc, prev); err != nil {
		return nil, err
	}
	fillClusterIPs(svc)
	if svc.Spec.Type == corev1.ServiceTypeNodePort || svc.Spec.Type == corev1.ServiceTypeLoadBalancer {
		if err := a.reservePorts(r, svc, prev); err != nil {
			return nil, err
		}
	}
	if len(r.addrs.ips) == 0 && len(r.addrs.ports) == 0 {
		return nil, nil
	}
	a.pending = append(a.pending, r)
	return r, nil
}

// reserveIP reserves svc's cluster IP; a.mu is held.
func (a *serviceAllocator) reserveIP(r *svcReservation, svc, prev *corev1.Service) error {
	ip := svc.Spec.ClusterIP
	if ip == corev1.ClusterIPNone || (prev != nil && ip != "" && ip == prev.Spec.ClusterIP) {
		return nil
	}
	if ip == "" {
		n, ok := a.randomIP(r.key)
		if !ok {
			return apierrors.NewInternalError(fmt.Errorf("failed to allocate a serviceIP: range is full (%s)", a.cidr))
		}
		r.addrs.ips = append(r.addrs.ips, n)
		svc.Spec.ClusterIP = ipString(n)
		return nil
	}
	p := field.NewPath("spec", "clusterIPs").Index(0)
	addr, err := netip.ParseAddr(ip)
	if err != nil || !addr.Is4() {
		return serviceInvalid(svc, field.Invalid(p, ip, "must be a valid IPv4 address (e.g. 10.9.8.7)"))
	}
	n := ipNum(addr)
	if !a.cidr.Contains(addr) || n == a.base || n == a.base+a.size-1 {
		return serviceInvalid(svc, field.Invalid(p, ip,
			fmt.Sprintf("failed to allocate IP %s: the provided IP (%s) is not in the valid range. The range of valid IPs is %s", ip, ip, a.cidr)))
	}
	if !a.ipFree(r.key, n) {
		return serviceInvalid(svc, field.Invalid(p, ip, fmt.Sprintf("failed to allocate IP %s: provided IP is already allocated", ip)))
	}
	r.addrs.ips = append(r.addrs.ips, n)
	return nil
}

// randomIP picks a free address for key. Like Kubernetes, it prefers the
// upper part of the range, leaving the lower band (up to 256 addresses)
// to clients that ask for a fixed IP (10.96.0.10 for DNS); it never
// returns the network or broadcast address.
func (a *serviceAllocator) randomIP(key string) (uint32, bool) {
	lo, hi := uint32(1), a.size-2 // usable offsets, inclusive
	band := min(max(16, a.size/16), 256)
	if band > hi {
		band = lo
	}
	for range 64 {
		off := band + rand.Uint32N(hi-band+1)
		if ip := a.base + off; a.ipFree(key, ip) {
			return ip, true
		}
	}
	for off := lo; off <= hi; off++ {
		if ip := a.base + off; a.ipFree(key, ip) {
			return ip, true
		}
	}
	return 0, false
}

// reservePorts reserves svc's node ports; a.mu is held.
func (a *serviceAllocator) reservePorts(r *svcReservation, svc, prev *corev1.Service) error {
	var kept []int32
	if prev != nil && (prev.Spec.Type == corev1.ServiceTypeNodePort || prev.Spec.Type == corev1.ServiceTypeLoadBalancer) {
		for _, p := range prev.Spec.Ports {
			kept = append(kept, p.NodePort)
		}
	}
	auto := svc.Spec.Type != corev1.ServiceTypeLoadBalancer || svc.Spec.AllocateLoadBalancerNodePorts == nil || *svc.Spec.AllocateLoadBalancerNodePorts
	for i := range svc.Spec.Ports {
		port := &svc.Spec.Ports[i]
		fp := field.NewPath("spec", "ports").Index(i).Child("nodePort")
		for _, q := range svc.Spec.Ports[:i] {
			if port.NodePort != 0 && q.NodePort == port.NodePort && q.Protocol == port.Protocol {
				return serviceInvalid(svc, field.Duplicate(fp, port.NodePort))
			}
		}
		switch {
		case port.NodePort == 0 && !auto:
		case port.NodePort == 0:
			n, ok := a.randomPort(r)
			if !ok {
				return apierrors.NewInternalError(fmt.Errorf("failed to allocate a nodePort: range is full (%s)", a.ports))
			}
			port.NodePort = n
			r.addrs.ports = append(r.addrs.ports, n)
		case slices.Contains(kept, port.NodePort) || slices.Contains(r.addrs.ports, port.NodePort):
			// Held by this service already (or shared by another protocol).
		case !a.ports.Contains(port.NodePort):
			return serviceInvalid(svc, field.Invalid(fp, port.NodePort,
				fmt.Sprintf("provided port is not in the valid range. The range of valid ports is %s", a.ports)))
		case !a.portFree(r.key, port.NodePort):
			return serviceInvalid(svc, field.Invalid(fp, port.NodePort, "provided port is already allocated"))
		default:
			r.addrs.ports = append(r.addrs.ports, port.NodePort)
		}
	}
	return nil
}

func (a *serviceAllocator) randomPort(r *svcReservation) (int32, bool) {
	free := func(p int32) bool { return a.portFree(r.key, p) && !slices.Contains(r.addrs.ports, p) }
	n := a.ports.Max - a.ports.Min + 1
	for range 64 {
		if p := a.ports.Min + rand.Int32N(n); free(p) {
			return p, true
		}
	}
	for p := a.ports.Min; p <= a.ports.Max; p++ {
		if free(p) {
			return p, true
		}
	}
	return 0, false
}

func ipNum(ip netip.Addr) uint32 {
	b := ip.As4()
	return binary.BigEndian.Uint32(b[:])
}

func ipString(n uint32) string {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], n)
	return netip.AddrFrom4(b).String()
}
