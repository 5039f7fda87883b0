package dns_test

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/tugboat-dev/tugboat/kernel/apiserver"
	"github.com/tugboat-dev/tugboat/kernel/apiserver/apiservertest"
	"github.com/tugboat-dev/tugboat/kernel/network/dns"
)

// Every query here goes to 127.0.0.1 (the server under test or a fake
// upstream on a random port).

func newClient(t testing.TB) kubernetes.Interface {
	t.Helper()
	_, cfg := apiservertest.Start(t, apiserver.Config{Logger: slog.New(slog.DiscardHandler)})
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatalf("client: %v", err)
	}
	return cs
}

func create(t testing.TB, cs kubernetes.Interface, objs ...any) {
	t.Helper()
	ctx := context.Background()
	for _, o := range objs {
		var err error
		switch o := o.(type) {
		case *corev1.Namespace:
			_, err = cs.CoreV1().Namespaces().Create(ctx, o, metav1.CreateOptions{})
		case *corev1.Service:
			_, err = cs.CoreV1().Services(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
		case *discoveryv1.EndpointSlice:
			_, err = cs.DiscoveryV1().EndpointSlices(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
		}
		if err != nil {
			t.Fatalf("create %T: %v", o, err)
		}
	}
}

// startDNS runs a server on 127.0.0.1 and returns its address.
func startDNS(t testing.TB, cs kubernetes.Interface, upstreams ...string) string {
	t.Helper()
	s, err := dns.New(dns.Config{Client: cs, Addr: "127.0.0.1:0", Upstreams: upstreams, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatalf("new dns: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("dns run: %v", err)
		}
	})
	select {
	case <-s.Ready():
	case err := <-done:
		t.Fatalf("dns stopped: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("dns not ready")
	}
	return s.Addr()
}

func query(t testing.TB, addr, name string, qtype uint16, network string) *mdns.Msg {
	t.Helper()
	m := new(mdns.Msg)
	m.SetQuestion(name, qtype)
	c := &mdns.Client{Net: network, Timeout: 5 * time.Second}
	resp, _, err := c.Exchange(m, addr)
	if err != nil {
		t.Fatalf("query %s %s: %v", name, mdns.TypeToString[qtype], err)
	}
	return resp
}

// answers renders the answer section as "TYPE value" strings, sorted.
func answers(m *mdns.Msg) []string {
	var out []string
	for _, rr := range m.Answer {
		switch rr := rr.(type) {
		case *mdns.A:
			out = append(out, "A "+rr.A.String())
		case *mdns.CNAME:
			out = append(out, "CNAME "+rr.Target)
		case *mdns.SRV:
			out = append(out, "SRV "+rr.Target+":"+strconv.Itoa(int(rr.Port)))
		}
	}
	slices.Sort(out)
	return out
}

func fixtures() []any {
	web := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "web"},
		Spec: corev1.ServiceSpec{ClusterIP: "10.96.0.50", Ports: []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}}}}
	db := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "prod", Name: "db"},
		Spec: corev1.ServiceSpec{ClusterIP: corev1.ClusterIPNone, Ports: []corev1.ServicePort{{Name: "pg", Port: 5432, Protocol: corev1.ProtocolTCP}}}}
	ext := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "ext"},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: "db.example.com"}}
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: "prod", Name: "db-1", Labels: map[string]string{discoveryv1.LabelServiceName: "db"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("pg"), Port: ptr.To[int32](5432), Protocol: ptr.To(corev1.ProtocolTCP)}},
		Endpoints: []discoveryv1.Endpoint{
			{Addresses: []string{"10.244.1.5"}, Hostname: ptr.To("db-0"), Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}},
			{Addresses: []string{"10.244.2.7"}, Conditions: discoveryv1.EndpointConditions{Ready: nil}},
			{Addresses: []string{"10.244.3.9"}, Hostname: ptr.To("db-2"), Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(false)}},
		},
	}
	return []any{&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "prod"}}, web, db, ext, slice}
}

func TestDNS(t *testing.T) {
	cs := newClient(t)
	create(t, cs, fixtures()...)
	addr := startDNS(t, cs)
	tests := []struct {
		name  string
		qtype uint16
		rcode int
		want  []string
	}{
		{"web.default.svc.cluster.local.", mdns.TypeA, mdns.RcodeSuccess, []string{"A 10.96.0.50"}},
		{"WEB.Default.svc.cluster.local.", mdns.TypeA, mdns.RcodeSuccess, []string{"A 10.96.0.50"}},
		{"web.default.svc.cluster.local.", mdns.TypeAAAA, mdns.RcodeSuccess, nil},
		{"_http._tcp.web.default.svc.cluster.local.", mdns.TypeSRV, mdns.RcodeSuccess, []string{"SRV web.default.svc.cluster.local.:80"}},
		{"_http._udp.web.default.svc.cluster.local.", mdns.TypeSRV, mdns.RcodeNameError, nil},
		{"db.prod.svc.cluster.local.", mdns.TypeA, mdns.RcodeSuccess, []string{"A 10.244.1.5", "A 10.244.2.7"}},
		{"db-0.db.prod.svc.cluster.local.", mdns.TypeA, mdns.RcodeSuccess, []string{"A 10.244.1.5"}},
		{"10-244-2-7.db.prod.svc.cluster.local.", mdns.TypeA, mdns.RcodeSuccess, []string{"A 10.244.2.7"}},
		{"db-2.db.prod.svc.cluster.local.", mdns.TypeA, mdns.RcodeNameError, nil},
		{"_pg._tcp.db.prod.svc.cluster.local.", mdns.TypeSRV, mdns.RcodeSuccess,
			[]string{"SRV 10-244-2-7.db.prod.svc.cluster.local.:5432", "SRV db-0.db.prod.svc.cluster.local.:5432"}},
		{"ext.default.svc.cluster.local.", mdns.TypeA, mdns.RcodeSuccess, []string{"CNAME db.example.com."}},
		{"10-244-1-5.prod.pod.cluster.local.", mdns.TypeA, mdns.RcodeSuccess, []string{"A 10.244.1.5"}},
		{"missing.default.svc.cluster.local.", mdns.TypeA, mdns.RcodeNameError, nil},
		{"web.other.svc.cluster.local.", mdns.TypeA, mdns.RcodeNameError, nil},
		{"default.svc.cluster.local.", mdns.TypeA, mdns.RcodeSuccess, nil},
		{"example.org.", mdns.TypeA, mdns.RcodeRefused, nil},
	}
	for _, tt := range tests {
		for _, network := range []string{"udp", "tcp"} {
			t.Run(network+"/"+mdns.TypeToString[tt.qtype]+"/"+tt.name, func(t *testing.T) {
				resp := query(t, addr, tt.name, tt.qtype, network)
				if resp.Rcode != tt.rcode {
					t.Fatalf("rcode %s, want %s", mdns.RcodeToString[resp.Rcode], mdns.RcodeToString[tt.rcode])
				}
				if got := answers(resp); !slices.Equal(got, tt.want) {
					t.Fatalf("answers %v, want %v", got, tt.want)
				}
			})
		}
	}
}

// TestDNSFollowsChanges checks that a Service created after the start
// resolves once the informer has it.
func TestDNSFollowsChanges(t *testing.T) {
	cs := newClient(t)
	addr := startDNS(t, cs)
	create(t, cs, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "late"},
		Spec: corev1.ServiceSpec{ClusterIP: "10.96.0.77", Ports: []corev1.ServicePort{{Port: 80}}}})
	deadline := time.Now().Add(30 * time.Second)
	for {
		got := answers(query(t, addr, "late.default.svc.cluster.local.", mdns.TypeA, "udp"))
		if slices.Equal(got, []string{"A 10.96.0.77"}) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("late service never resolved: %v", got)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestDNSForwards checks forwarding to a configured upstream (a fake one
// on 127.0.0.1).
func TestDNSForwards(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	up := &mdns.Server{PacketConn: pc, Handler: mdns.HandlerFunc(func(w mdns.ResponseWriter, r *mdns.Msg) {
		m := new(mdns.Msg)
		m.SetReply(r)
		m.Answer = []mdns.RR{&mdns.A{Hdr: mdns.RR_Header{Name: r.Question[0].Name, Rrtype: mdns.TypeA, Class: mdns.ClassINET, Ttl: 60},
			A: net.IPv4(192, 0, 2, 1)}}
		w.WriteMsg(m)
	})}
	go up.ActivateAndServe()
	t.Cleanup(func() { up.Shutdown() })
	addr := startDNS(t, newClient(t), pc.LocalAddr().String())
	got := answers(query(t, addr, "example.org.", mdns.TypeA, "udp"))
	if !slices.Equal(got, []string{"A 192.0.2.1"}) {
		t.Fatalf("forwarded answer %v, want the upstream's A 192.0.2.1", got)
	}
}

// TestPodResolv checks a pod's resolv.conf for each dnsPolicy, with and
// without dnsConfig, against what kubelet writes.
func TestPodResolv(t *testing.T) {
	dnsIP := netip.MustParseAddr("10.96.0.10")
	host := []byte("# node file\nnameserver 192.0.2.53\nsearch corp.example\noptions timeout:2 ndots:1\n")
	two := "2"
	cfg := &corev1.PodDNSConfig{
		Nameservers: []string{"192.0.2.99", "10.96.0.10"},
		Searches:    []string{"extra.example", "svc.cluster.local"},
		Options:     []corev1.PodDNSConfigOption{{Name: "ndots", Value: &two}, {Name: "edns0"}},
	}
	pod := func(policy corev1.DNSPolicy, c *corev1.PodDNSConfig) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "prod"}, Spec: corev1.PodSpec{DNSPolicy: policy, DNSConfig: c}}
	}
	for _, tc := range []struct {
		name       string
		pod        *corev1.Pod
		nameserver netip.Addr
		want       string // "" = no file: the pod sees the node's
	}{
		{"cluster-first-default", pod("", nil), dnsIP,
			"nameserver 10.96.0.10\nsearch prod.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n"},
		{"cluster-first-with-config", pod(corev1.DNSClusterFirst, cfg), dnsIP,
			"nameserver 10.96.0.10\nnameserver 192.0.2.99\n" +
				"search prod.svc.cluster.local svc.cluster.local cluster.local extra.example\noptions ndots:2 edns0\n"},
		{"cluster-first-without-cluster-dns", pod(corev1.DNSClusterFirst, nil), netip.Addr{}, ""},
		{"default", pod(corev1.DNSDefault, nil), dnsIP, ""},
		{"default-with-config", pod(corev1.DNSDefault, cfg), dnsIP,
			"nameserver 192.0.2.53\nnameserver 192.0.2.99\nnameserver 10.96.0.10\n" +
				"search corp.example extra.example svc.cluster.local\noptions timeout:2 ndots:2 edns0\n"},
		{"none", pod(corev1.DNSNone, cfg), dnsIP,
			"nameserver 192.0.2.99\nnameserver 10.96.0.10\nsearch extra.example svc.cluster.local\noptions ndots:2 edns0\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := dns.PodResolv(tc.pod, tc.nameserver, "", host)
			if ok != (tc.want != "") || got != tc.want {
				t.Fatalf("PodResolv = %q, %v; want %q", got, ok, tc.want)
			}
		})
	}
}
