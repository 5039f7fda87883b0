package proxy

import (
	"net/netip"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
)

func testService(name, ip string, ports ...corev1.ServicePort) *corev1.Service {
	return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP, ClusterIP: ip, ClusterIPs: []string{ip}, Ports: ports}}
}

func testPort(name string, port, target int32) corev1.ServicePort {
	return corev1.ServicePort{Name: name, Port: port, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt32(target)}
}

// testSlice is an EndpointSlice of service svc with one port; ready maps
// each address to its Ready condition (nil: unset).
func testSlice(svc, name, portName string, port int32, ready map[string]*bool) *discoveryv1.EndpointSlice {
	s := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: "default", Name: name, Labels: map[string]string{discoveryv1.LabelServiceName: svc}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To(portName), Port: ptr.To(port), Protocol: ptr.To(corev1.ProtocolTCP)}},
	}
	for addr, r := range ready {
		s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{Addresses: []string{addr}, Conditions: discoveryv1.EndpointConditions{Ready: r}})
	}
	return s
}

func TestBuildModel(t *testing.T) {
	web := testService("web", "10.96.0.10", testPort("http", 80, 8080), testPort("metrics", 9090, 9090))
	web.Spec.SessionAffinity = corev1.ServiceAffinityClientIP
	headless := testService("headless", corev1.ClusterIPNone, testPort("", 80, 80))
	ext := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "ext"},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: "example.com"}}
	slices := []*discoveryv1.EndpointSlice{
		testSlice("web", "web-1", "http", 8080, map[string]*bool{"10.244.1.2": ptr.To(true), "10.244.1.3": ptr.To(false), "10.244.1.4": nil}),
		testSlice("web", "web-2", "http", 8080, map[string]*bool{"10.244.2.2": ptr.To(true), "10.244.1.2": ptr.To(true)}),
		testSlice("headless", "h", "", 80, map[string]*bool{"10.244.1.9": nil}),
	}
	model := buildModel([]*corev1.Service{web, headless, ext}, slices)
	if len(model) != 2 {
		t.Fatalf("got %d service ports, want 2 (web's http and metrics): %+v", len(model), model)
	}
	tests := []struct {
		name    string
		sp      servicePort
		wantEPs string
	}{
		{"default/web:http", model[0], "10.244.1.2:8080 10.244.1.4:8080 10.244.2.2:8080"},
		{"default/web:metrics", model[1], ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.sp.name != tt.name {
				t.Fatalf("name %q, want %q", tt.sp.name, tt.name)
			}
			var eps []string
			for _, e := range tt.sp.endpoints {
				eps = append(eps, e.String())
			}
			if got := strings.Join(eps, " "); got != tt.wantEPs {
				t.Fatalf("endpoints %q, want %q (ready or unset only, sorted, no duplicates)", got, tt.wantEPs)
			}
			if tt.sp.affinity != corev1.DefaultClientIPServiceAffinitySeconds {
				t.Fatalf("affinity %d, want the default %d", tt.sp.affinity, corev1.DefaultClientIPServiceAffinitySeconds)
			}
		})
	}
}

func TestRender(t *testing.T) {
	lb := testService("lb", "10.96.0.11", testPort("", 443, 8443))
	lb.Spec.Type = corev1.ServiceTypeNodePort
	lb.Spec.Ports[0].NodePort = 30443
	lb.Spec.ExternalIPs = []string{"192.0.2.10"}
	sticky := testService("sticky", "10.96.0.12", testPort("", 80, 80))
	sticky.Spec.SessionAffinity = corev1.ServiceAffinityClientIP
	sticky.Spec.SessionAffinityConfig = &corev1.SessionAffinityConfig{ClientIP: &corev1.ClientIPConfig{TimeoutSeconds: ptr.To[int32](60)}}
	empty := testService("empty", "10.96.0.13", testPort("", 80, 80))
	three := map[string]*bool{"10.244.1.2": nil, "10.244.1.3": nil, "10.244.1.4": nil}
	model := buildModel([]*corev1.Service{lb, sticky, empty}, []*discoveryv1.EndpointSlice{
		testSlice("lb", "lb", "", 8443, three), testSlice("sticky", "sticky", "", 80, three)})
	tabs := render(model, netip.MustParsePrefix("10.244.0.0/16"))
	lbSP, stickySP := &model[1], &model[2]
	svc := tabs.nat[svcChain(lbSP)]
	tests := []struct {
		name   string
		rules  string
		want   []string
		absent []string
	}{
		{"cluster IP jumps to the service chain", tabs.nat[chainServices],
			[]string{"-A KUBE-SERVICES -d 10.96.0.11/32 -p tcp -m tcp --dport 443 -j " + svcChain(lbSP),
				"-A KUBE-SERVICES -d 192.0.2.10/32 -p tcp -m tcp --dport 443 -j " + extChain(lbSP),
				"-A KUBE-SERVICES -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS"},
			[]string{"10.96.0.13"}},
		{"node port", tabs.nat[chainNodePorts], []string{"-A KUBE-NODEPORTS -p tcp -m tcp --dport 30443 -j " + extChain(lbSP)}, nil},
		{"external traffic is masqueraded", tabs.nat[extChain(lbSP)],
			[]string{"-j KUBE-MARK-MASQ", "-j " + svcChain(lbSP)}, nil},
		{"random probabilities", svc, []string{
			"! -s 10.244.0.0/16 -d 10.96.0.11/32 -p tcp -m tcp --dport 443 -j KUBE-MARK-MASQ",
			"-m statistic --mode random --probability 0.3333333333 -j " + sepChain(lbSP, netip.MustParseAddrPort("10.244.1.2:8443")),
			"-m statistic --mode random --probability 0.5000000000 -j " + sepChain(lbSP, netip.MustParseAddrPort("10.244.1.3:8443")),
			"-A " + svcChain(lbSP) + " -j " + sepChain(lbSP, netip.MustParseAddrPort("10.244.1.4:8443"))},
			[]string{"recent"}},
		{"endpoint chain", tabs.nat[sepChain(lbSP, netip.MustParseAddrPort("10.244.1.3:8443"))],
			[]string{"-s 10.244.1.3/32 -j KUBE-MARK-MASQ", "-p tcp -m tcp -j DNAT --to-destination 10.244.1.3:8443"}, nil},
		{"affinity check", tabs.nat[svcChain(stickySP)],
			[]string{"-m recent --name " + sepChain(stickySP, netip.MustParseAddrPort("10.244.1.2:80")) + " --mask 255.255.255.255 --rsource --rcheck --seconds 60 --reap"}, nil},
		{"affinity set", tabs.nat[sepChain(stickySP, netip.MustParseAddrPort("10.244.1.2:80"))],
			[]string{"-m recent --name " + sepChain(stickySP, netip.MustParseAddrPort("10.244.1.2:80")) + " --mask 255.255.255.255 --rsource --set"}, nil},
		{"no endpoints: reject", tabs.filter[chainServices],
			[]string{"-A KUBE-SERVICES -d 10.96.0.13/32 -p tcp -m tcp --dport 80 -j REJECT"}, []string{"10.96.0.11"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, w := range tt.want {
				if !strings.Contains(tt.rules, w) {
					t.Errorf("rules lack %q:\n%s", w, tt.rules)
				}
			}
			for _, a := range tt.absent {
				if strings.Contains(tt.rules, a) {
					t.Errorf("rules contain %q:\n%s", a, tt.rules)
				}
			}
		})
	}
	for chain := range tabs.nat {
		if len(chain) > 28 {
			t.Errorf("chain name %q longer than iptables' 28 bytes", chain)
		}
	}
}

// TestPayloadIncremental checks that after one endpoint changes only that
// service's chains are written.
func TestPayloadIncremental(t *testing.T) {
	svcs := []*corev1.Service{testService("a", "10.96.0.10", testPort("", 80, 80)), testService("b", "10.96.0.20", testPort("", 80, 80))}
	before := render(buildModel(svcs, []*discoveryv1.EndpointSlice{
		testSlice("a", "a", "", 80, map[string]*bool{"10.244.1.2": nil, "10.244.1.3": nil}),
		testSlice("b", "b", "", 80, map[string]*bool{"10.244.1.5": nil})}), netip.Prefix{})
	model := buildModel(svcs, []*discoveryv1.EndpointSlice{
		testSlice("a", "a", "", 80, map[string]*bool{"10.244.1.2": nil, "10.244.1.4": nil}),
		testSlice("b", "b", "", 80, map[string]*bool{"10.244.1.5": nil})})
	after := render(model, netip.Prefix{})
	var b strings.Builder
	payload(&b, "nat", before.nat, after.nat, nil)
	got := b.String()
	a := &model[0]
	tests := []struct {
		name    string
		text    string
		present bool
	}{
		{"service a's chain rewritten", ":" + svcChain(a) + " - [0:0]", true},
		{"new endpoint chain", ":" + sepChain(a, netip.MustParseAddrPort("10.244.1.4:80")) + " - [0:0]", true},
		{"old endpoint chain deleted", "-X " + sepChain(a, netip.MustParseAddrPort("10.244.1.3:80")), true},
		{"unchanged endpoint chain left alone", sepChain(a, netip.MustParseAddrPort("10.244.1.2:80")) + " - [0:0]", false},
		{"service b left alone", svcChain(&model[1]), false},
		{"KUBE-SERVICES left alone", ":KUBE-SERVICES", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if strings.Contains(got, tt.text) != tt.present {
				t.Fatalf("payload contains %q = %v, want %v:\n%s", tt.text, !tt.present, tt.present, got)
			}
		})
	}
	b.Reset()
	payload(&b, "nat", after.nat, after.nat, nil)
	if b.Len() != 0 {
		t.Fatalf("payload for no change: %q, want nothing", b.String())
	}
}

// TestBuildReusesUnchanged checks that a sync after one endpoint change
// involves only that service's chains and the shared ones.
func TestBuildReusesUnchanged(t *testing.T) {
	svcs := []*corev1.Service{testService("a", "10.96.0.10", testPort("", 80, 80)), testService("b", "10.96.0.20", testPort("", 80, 80))}
	cidr := netip.MustParsePrefix("10.244.0.0/16")
	prev := build(buildModel(svcs, []*discoveryv1.EndpointSlice{
		testSlice("a", "a", "", 80, map[string]*bool{"10.244.1.2": nil}),
		testSlice("b", "b", "", 80, map[string]*bool{"10.244.1.5": nil})}), cidr, nil)
	model := buildModel(svcs, []*discoveryv1.EndpointSlice{
		testSlice("a", "a", "", 80, map[string]*bool{"10.244.1.3": nil}),
		testSlice("b", "b", "", 80, map[string]*bool{"10.244.1.5": nil})})
	next := build(model, cidr, prev)
	if next.ports["default/b:/TCP"] != prev.ports["default/b:/TCP"] {
		t.Fatalf("service b's unchanged fragment was rebuilt")
	}
	have, want := diff(prev, next)
	shared := len(next.nat)
	tests := []struct {
		name string
		set  ruleset
		want []string
	}{
		{"want", want.nat, []string{svcChain(&model[0]), sepChain(&model[0], netip.MustParseAddrPort("10.244.1.3:80"))}},
		{"have", have.nat, []string{svcChain(&model[0]), sepChain(&model[0], netip.MustParseAddrPort("10.244.1.2:80"))}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if len(tt.set) != shared+len(tt.want) {
				t.Fatalf("%d chains, want the %d shared ones and %v", len(tt.set), shared, tt.want)
			}
			for _, c := range tt.want {
				if _, ok := tt.set[c]; !ok {
					t.Fatalf("chain %s missing", c)
				}
			}
		})
	}
}
