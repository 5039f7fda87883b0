package apiserver_test

import (
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"

	"net/http/httptest"

	"github.com/tugboat-dev/tugboat/kernel/apiserver"
	tbadger "github.com/tugboat-dev/tugboat/kernel/store/badger"
)

// withRanges sets the service CIDR and node port range.
func withRanges(cidr string, lo, hi int32) envOption {
	return withAPI(func(c *apiserver.Config) {
		c.ServiceCIDR = netip.MustParsePrefix(cidr)
		c.NodePorts = apiserver.PortRange{Min: lo, Max: hi}
	})
}

func service(name string, typ corev1.ServiceType, clusterIP string, nodePorts ...int32) *corev1.Service {
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.ServiceSpec{
		Type: typ, ClusterIP: clusterIP, Selector: map[string]string{"app": name},
		Ports: []corev1.ServicePort{{Name: "http", Port: 80}}}}
	for i, p := range nodePorts {
		if i == 0 {
			svc.Spec.Ports[0].NodePort = p
			continue
		}
		svc.Spec.Ports = append(svc.Spec.Ports, corev1.ServicePort{Name: fmt.Sprintf("p%d", i), Port: int32(80 + i), NodePort: p})
	}
	return svc
}

// errCheck says what a create must return: nil for success, or the
// predicate and a substring of the message.
type errCheck struct {
	is  func(error) bool
	msg string
}

func (c *errCheck) check(t testing.TB, err error) {
	t.Helper()
	switch {
	case c == nil && err != nil:
		t.Fatalf("create: %v", err)
	case c == nil:
	case err == nil:
		t.Fatalf("create succeeded, want an error containing %q", c.msg)
	case !c.is(err) || !strings.Contains(err.Error(), c.msg):
		t.Fatalf("create: got %v, want an error containing %q", err, c.msg)
	}
}

func invalid(msg string) *errCheck  { return &errCheck{apierrors.IsInvalid, msg} }
func internal(msg string) *errCheck { return &errCheck{apierrors.IsInternalError, msg} }

func TestServiceAllocation(t *testing.T) {
	e := newEnv(t, withRanges("10.0.0.0/24", 30000, 30099))
	ctx := ctxT(t)
	cidr := netip.MustParsePrefix("10.0.0.0/24")
	svcs := e.client.CoreV1().Services("default")
	if _, err := svcs.Create(ctx, service("taken", corev1.ServiceTypeNodePort, "10.0.0.10", 30050), metav1.CreateOptions{}); err != nil {
		t.Fatalf("create taken: %v", err)
	}
	lbNoPorts := service("lb-noports", corev1.ServiceTypeLoadBalancer, "")
	lbNoPorts.Spec.AllocateLoadBalancerNodePorts = ptr.To(false)
	udp := service("udp-tcp", corev1.ServiceTypeNodePort, "", 30060, 30060)
	udp.Spec.Ports[1].Protocol = corev1.ProtocolUDP
	headless := service("headless", corev1.ServiceTypeClusterIP, corev1.ClusterIPNone)
	external := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "external"},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: "example.com"}}
	tests := []struct {
		name string
		svc  *corev1.Service
		err  *errCheck
		// ip is the wanted cluster IP: "" any address of the CIDR, "-" none.
		ip string
		// ports are the wanted node ports: 0 any port of the range.
		ports []int32
	}{
		{name: "random IP", svc: service("random", corev1.ServiceTypeClusterIP, "")},
		{name: "fixed IP", svc: service("fixed", corev1.ServiceTypeClusterIP, "10.0.0.11"), ip: "10.0.0.11"},
		{name: "IP taken", svc: service("dup-ip", corev1.ServiceTypeClusterIP, "10.0.0.10"),
			err: invalid("failed to allocate IP 10.0.0.10: provided IP is already allocated")},
		{name: "IP out of range", svc: service("far-ip", corev1.ServiceTypeClusterIP, "10.1.0.5"),
			err: invalid("the provided IP (10.1.0.5) is not in the valid range. The range of valid IPs is 10.0.0.0/24")},
		{name: "network address", svc: service("net-ip", corev1.ServiceTypeClusterIP, "10.0.0.0"), err: invalid("not in the valid range")},
		{name: "broadcast address", svc: service("bcast-ip", corev1.ServiceTypeClusterIP, "10.0.0.255"), err: invalid("not in the valid range")},
		{name: "not an IP", svc: service("bad-ip", corev1.ServiceTypeClusterIP, "10.0.0"), err: invalid("must be a valid IPv4 address")},
		{name: "headless", svc: headless, ip: corev1.ClusterIPNone},
		{name: "external name", svc: external, ip: "-"},
		{name: "random node port", svc: service("np", corev1.ServiceTypeNodePort, ""), ports: []int32{0}},
		{name: "fixed node port", svc: service("np-fixed", corev1.ServiceTypeNodePort, "", 30051), ports: []int32{30051}},
		{name: "node port taken", svc: service("np-dup", corev1.ServiceTypeNodePort, "", 30050),
			err: invalid("provided port is already allocated")},
		{name: "node port out of range", svc: service("np-far", corev1.ServiceTypeNodePort, "", 31000),
			err: invalid("provided port is not in the valid range. The range of valid ports is 30000-30099")},
		{name: "same node port twice", svc: service("np-twice", corev1.ServiceTypeNodePort, "", 30070, 30070), err: invalid("Duplicate value")},
		{name: "same node port for TCP and UDP", svc: udp, ports: []int32{30060, 30060}},
		{name: "load balancer", svc: service("lb", corev1.ServiceTypeLoadBalancer, "", 0, 30080), ports: []int32{0, 30080}},
		{name: "load balancer without node ports", svc: lbNoPorts, ports: []int32{-1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := svcs.Create(ctx, tt.svc, metav1.CreateOptions{})
			tt.err.check(t, err)
			if err != nil {
				return
			}
			switch ip := got.Spec.ClusterIP; tt.ip {
			case "":
				a, err := netip.ParseAddr(ip)
				if err != nil || !cidr.Contains(a) || a == cidr.Addr() || ip == "10.0.0.255" {
					t.Errorf("cluster IP %q: want a usable address of %s", ip, cidr)
				}
				if len(got.Spec.ClusterIPs) != 1 || got.Spec.ClusterIPs[0] != ip {
					t.Errorf("clusterIPs %v, want [%s]", got.Spec.ClusterIPs, ip)
				}
			case "-":
				if ip != "" {
					t.Errorf("cluster IP %q, want none", ip)
				}
			default:
				if ip != tt.ip || len(got.Spec.ClusterIPs) != 1 || got.Spec.ClusterIPs[0] != tt.ip {
					t.Errorf("cluster IP %q (%v), want %s", ip, got.Spec.ClusterIPs, tt.ip)
				}
			}
			for i, want := range tt.ports {
				np := got.Spec.Ports[i].NodePort
				switch {
				case want == -1 && np != 0:
					t.Errorf("port %d: node port %d, want none", i, np)
				case want == 0 && (np < 30000 || np > 30099):
					t.Errorf("port %d: node port %d, want one of 30000-30099", i, np)
				case want > 0 && np != want:
					t.Errorf("port %d: node port %d, want %d", i, np, want)
				}
			}
		})
	}
}

// TestServiceAllocationReleased checks that addresses come free at once
// when their Service is deleted, changes type, or a dry run used them.
func TestServiceAllocationReleased(t *testing.T) {
	e := newEnv(t, withRanges("10.0.0.0/24", 30000, 30099))
	ctx := ctxT(t)
	svcs := e.client.CoreV1().Services("default")
	create := func(t testing.TB, name string, opts metav1.CreateOptions) *corev1.Service {
		t.Helper()
		got, err := svcs.Create(ctx, service(name, corev1.ServiceTypeNodePort, "10.0.0.20", 30020), opts)
		if err != nil {
			t.Fatalf("create %s: %v", name, err)
		}
		return got
	}
	tests := []struct {
		name string
		// free gives up service name's addresses.
		free func(t testing.TB, name string)
	}{
		{"delete", func(t testing.TB, name string) {
			create(t, name, metav1.CreateOptions{})
			if err := svcs.Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
				t.Fatalf("delete: %v", err)
			}
		}},
		{"dry run", func(t testing.TB, name string) {
			create(t, name, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		}},
		{"type change", func(t testing.TB, name string) {
			got := create(t, name, metav1.CreateOptions{})
			got.Spec.Type = corev1.ServiceTypeClusterIP
			got.Spec.ExternalTrafficPolicy = ""
			got, err := svcs.Update(ctx, got, metav1.UpdateOptions{})
			if err != nil {
				t.Fatalf("update to ClusterIP: %v", err)
			}
			if np := got.Spec.Ports[0].NodePort; np != 0 {
				t.Fatalf("node port %d kept after the change to ClusterIP", np)
			}
			if err := svcs.Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
				t.Fatalf("delete: %v", err)
			}
		}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.free(t, fmt.Sprintf("first-%d", i))
			create(t, fmt.Sprintf("second-%d", i), metav1.CreateOptions{})
			if err := svcs.Delete(ctx, fmt.Sprintf("second-%d", i), metav1.DeleteOptions{}); err != nil {
				t.Fatalf("delete: %v", err)
			}
		})
	}
}

// TestServiceAllocationUpdate checks that an update keeps the allocated
// values a client left out and may not take another service's.
func TestServiceAllocationUpdate(t *testing.T) {
	e := newEnv(t, withRanges("10.0.0.0/24", 30000, 30099))
	ctx := ctxT(t)
	svcs := e.client.CoreV1().Services("default")
	if _, err := svcs.Create(ctx, service("other", corev1.ServiceTypeNodePort, "", 30001), metav1.CreateOptions{}); err != nil {
		t.Fatalf("create: %v", err)
	}
	got, err := svcs.Create(ctx, service("svc", corev1.ServiceTypeNodePort, ""), metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	ip, np := got.Spec.ClusterIP, got.Spec.Ports[0].NodePort

	put := got.DeepCopy()
	put.Spec.ClusterIP, put.Spec.ClusterIPs, put.Spec.Ports[0].NodePort = "", nil, 0
	got, err = svcs.Update(ctx, put, metav1.UpdateOptions{})
	if err != nil {
		t.Fatalf("update leaving out allocated values: %v", err)
	}
	if got.Spec.ClusterIP != ip || got.Spec.Ports[0].NodePort != np {
		t.Fatalf("update: got %s:%d, want the allocated %s:%d", got.Spec.ClusterIP, got.Spec.Ports[0].NodePort, ip, np)
	}

	steal := got.DeepCopy()
	steal.Spec.Ports[0].NodePort = 30001
	if _, err := svcs.Update(ctx, steal, metav1.UpdateOptions{}); !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "provided port is already allocated") {
		t.Fatalf("update taking another service's node port: got %v, want 422 already allocated", err)
	}
	// Move to a free port other than the allocated one (which was random).
	target := int32(30002)
	if np == target {
		target = 30003
	}
	move := got.DeepCopy()
	move.Spec.Ports[0].NodePort = target
	if got, err = svcs.Update(ctx, move, metav1.UpdateOptions{}); err != nil || got.Spec.Ports[0].NodePort != target {
		t.Fatalf("update to a free node port: %v", err)
	}
	// The port the update gave up is free for others at once.
	if _, err := svcs.Create(ctx, service("next", corev1.ServiceTypeNodePort, "", np), metav1.CreateOptions{}); err != nil {
		t.Fatalf("create with the released node port %d: %v", np, err)
	}
}

// TestServiceAllocationConcurrent races creates for the same and for
// random addresses: no address is ever given twice.
func TestServiceAllocationConcurrent(t *testing.T) {
	// A /28 has 14 usable addresses; 5 node ports.
	e := newEnv(t, withRanges("10.0.0.0/28", 30000, 30004))
	ctx := ctxT(t)
	svcs := e.client.CoreV1().Services("default")
	race := func(n int, mk func(i int) *corev1.Service) (ok []*corev1.Service, errs []error) {
		var mu sync.Mutex
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				got, err := svcs.Create(ctx, mk(i), metav1.CreateOptions{})
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					errs = append(errs, err)
				} else {
					ok = append(ok, got)
				}
			})
		}
		wg.Wait()
		return ok, errs
	}
	cleanup := func(t testing.TB, list []*corev1.Service) {
		t.Helper()
		for _, s := range list {
			if err := svcs.Delete(ctx, s.Name, metav1.DeleteOptions{}); err != nil {
				t.Fatalf("delete %s: %v", s.Name, err)
			}
		}
	}
	tests := []struct {
		name      string
		n, wantOK int
		mk        func(i int) *corev1.Service
		wantErr   *errCheck
		key       func(*corev1.Service) string
	}{
		{"same IP", 12, 1, func(i int) *corev1.Service {
			return service(fmt.Sprintf("same-%d", i), corev1.ServiceTypeClusterIP, "10.0.0.5")
		}, invalid("provided IP is already allocated"), func(s *corev1.Service) string { return s.Spec.ClusterIP }},
		{"random IPs", 20, 14, func(i int) *corev1.Service {
			return service(fmt.Sprintf("rand-%d", i), corev1.ServiceTypeClusterIP, "")
		}, internal("range is full"), func(s *corev1.Service) string { return s.Spec.ClusterIP }},
		{"same node port", 8, 1, func(i int) *corev1.Service {
			return service(fmt.Sprintf("samenp-%d", i), corev1.ServiceTypeNodePort, "", 30003)
		}, invalid("provided port is already allocated"), func(s *corev1.Service) string { return fmt.Sprint(s.Spec.Ports[0].NodePort) }},
		{"random node ports", 8, 5, func(i int) *corev1.Service {
			return service(fmt.Sprintf("randnp-%d", i), corev1.ServiceTypeNodePort, "")
		}, internal("range is full"), func(s *corev1.Service) string { return fmt.Sprint(s.Spec.Ports[0].NodePort) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ok, errs := race(tt.n, tt.mk)
			t.Cleanup(func() { cleanup(t, ok) })
			if len(ok) != tt.wantOK {
				t.Fatalf("%d creates succeeded (errors %v), want %d", len(ok), errs, tt.wantOK)
			}
			seen := map[string]string{}
			for _, s := range ok {
				k := tt.key(s)
				if other, dup := seen[k]; dup {
					t.Fatalf("%s and %s both got %s", other, s.Name, k)
				}
				seen[k] = s.Name
			}
			for _, err := range errs {
				tt.wantErr.check(t, err)
			}
		})
	}
}

// TestServiceAllocationRestart fills a small range, restarts the server
// on the same store, and checks that the new server knows every address.
func TestServiceAllocationRestart(t *testing.T) {
	dir := t.TempDir()
	start := func(t testing.TB) (kubernetes.Interface, func()) {
		t.Helper()
		st, err := tbadger.Open(tbadger.Options{Dir: dir, CompactionWindow: -1, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatalf("open store: %v", err)
		}
		api, err := apiserver.New(apiserver.Config{Store: st, Logger: slog.New(slog.DiscardHandler),
			ServiceCIDR: netip.MustParsePrefix("10.0.0.0/28"), NodePorts: apiserver.PortRange{Min: 30000, Max: 30001}})
		if err != nil {
			st.Close()
			t.Fatalf("new apiserver: %v", err)
		}
		srv := httptest.NewServer(api.Handler())
		client, err := kubernetes.NewForConfig(&rest.Config{Host: srv.URL, QPS: 1000, Burst: 1000})
		if err != nil {
			t.Fatalf("client: %v", err)
		}
		stop := func() {
			api.Close()
			srv.Close()
			if err := st.Close(); err != nil {
				t.Errorf("close store: %v", err)
			}
		}
		return client, stop
	}
	ctx := ctxT(t)
	client, stop := start(t)
	ips := map[string]string{}
	for i := range 14 {
		typ := corev1.ServiceTypeClusterIP
		if i < 2 {
			typ = corev1.ServiceTypeNodePort
		}
		got, err := client.CoreV1().Services("default").Create(ctx, service(fmt.Sprintf("s%d", i), typ, ""), metav1.CreateOptions{})
		if err != nil {
			stop()
			t.Fatalf("create s%d: %v", i, err)
		}
		ips[got.Name] = got.Spec.ClusterIP
	}
	stop()

	client, stop = start(t)
	t.Cleanup(stop)
	svcs := client.CoreV1().Services("default")
	_, err := svcs.Create(ctx, service("more", corev1.ServiceTypeClusterIP, ""), metav1.CreateOptions{})
	internal("range is full").check(t, err)
	_, err = svcs.Create(ctx, service("more", corev1.ServiceTypeClusterIP, ips["s3"]), metav1.CreateOptions{})
	invalid("provided IP is already allocated").check(t, err)
	if err := svcs.Delete(ctx, "s3", metav1.DeleteOptions{}); err != nil {
		t.Fatalf("delete s3: %v", err)
	}
	got, err := svcs.Create(ctx, service("more", corev1.ServiceTypeNodePort, ""), metav1.CreateOptions{})
	if err == nil || !apierrors.IsInternalError(err) {
		t.Fatalf("node port create with both ports held before the restart: got %v (%v), want range is full", got, err)
	}
	got, err = svcs.Create(ctx, service("more", corev1.ServiceTypeClusterIP, ""), metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create after delete: %v", err)
	}
	if got.Spec.ClusterIP != ips["s3"] {
		t.Fatalf("create after delete got %s, want the only free address %s", got.Spec.ClusterIP, ips["s3"])
	}
}

func TestServiceRangesValidated(t *testing.T) {
	tests := []struct {
		name string
		cfg  apiserver.Config
	}{
		{"IPv6 CIDR", apiserver.Config{ServiceCIDR: netip.MustParsePrefix("fd00::/108")}},
		{"host bits", apiserver.Config{ServiceCIDR: netip.MustParsePrefix("10.96.0.1/12")}},
		{"tiny CIDR", apiserver.Config{ServiceCIDR: netip.MustParsePrefix("10.96.0.0/30")}},
		{"inverted ports", apiserver.Config{NodePorts: apiserver.PortRange{Min: 32000, Max: 31000}}},
		{"port 0", apiserver.Config{NodePorts: apiserver.PortRange{Min: 0, Max: 31000}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, err := tbadger.Open(tbadger.Options{Dir: t.TempDir(), CompactionWindow: -1, Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				t.Fatalf("open store: %v", err)
			}
			t.Cleanup(func() { st.Close() })
			cfg := tt.cfg
			cfg.Store, cfg.Logger = st, slog.New(slog.DiscardHandler)
			if api, err := apiserver.New(cfg); err == nil {
				api.Close()
				t.Fatalf("New accepted %+v", tt.cfg)
			}
		})
	}
}

func TestParsePortRange(t *testing.T) {
	tests := []struct {
		in   string
		want apiserver.PortRange
		ok   bool
	}{
		{"30000-32767", apiserver.PortRange{Min: 30000, Max: 32767}, true},
		{" 8000 - 8100 ", apiserver.PortRange{Min: 8000, Max: 8100}, true},
		{"9000", apiserver.PortRange{Min: 9000, Max: 9000}, true},
		{"2-1", apiserver.PortRange{}, false},
		{"0-10", apiserver.PortRange{}, false},
		{"1-70000", apiserver.PortRange{}, false},
		{"a-b", apiserver.PortRange{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := apiserver.ParsePortRange(tt.in)
			if (err == nil) != tt.ok || (tt.ok && got != tt.want) {
				t.Fatalf("ParsePortRange(%q) = %v, %v; want %v, ok=%v", tt.in, got, err, tt.want, tt.ok)
			}
		})
	}
}
