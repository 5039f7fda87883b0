package agent_test

import (
	"context"
	"net/netip"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tugboat-dev/tugboat/kernel/agent"
)

// TestServiceEnv checks the Service variables a container gets: the
// cluster IP and ports, or — with a userspace proxy (Config.ServiceAddr) —
// the proxy's local address; none for headless Services, none of the
// namespace's Services when enableServiceLinks is false, and the pod's
// own env wins.
func TestServiceEnv(t *testing.T) {
	cs := newClient(t)
	ctx := context.Background()
	for _, s := range []*corev1.Service{
		{ObjectMeta: metav1.ObjectMeta{Name: "web-app"}, Spec: corev1.ServiceSpec{ClusterIP: "10.96.0.20",
			Ports: []corev1.ServicePort{{Name: "http", Port: 80}, {Name: "metrics", Port: 9090, Protocol: corev1.ProtocolUDP}}}},
		{ObjectMeta: metav1.ObjectMeta{Name: "headless"}, Spec: corev1.ServiceSpec{ClusterIP: corev1.ClusterIPNone,
			Ports: []corev1.ServicePort{{Port: 80}}}},
	} {
		if _, err := cs.CoreV1().Services("default").Create(ctx, s, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	proxied := map[string]uint16{"http": 40001, "metrics": 40002}
	userspace := func(ns, name, port string) (netip.AddrPort, bool) {
		p, ok := proxied[port]
		return netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), p), ok && ns == "default" && name == "web-app"
	}
	off := false
	tests := []struct {
		name      string
		proxy     func(string, string, string) (netip.AddrPort, bool)
		links     *bool
		env       []corev1.EnvVar
		want, not []string
	}{
		{name: "cluster IP", want: []string{
			"WEB_APP_SERVICE_HOST=10.96.0.20", "WEB_APP_SERVICE_PORT=80", "WEB_APP_SERVICE_PORT_HTTP=80",
			"WEB_APP_SERVICE_PORT_METRICS=9090", "WEB_APP_PORT=tcp://10.96.0.20:80",
			"WEB_APP_PORT_80_TCP=tcp://10.96.0.20:80", "WEB_APP_PORT_80_TCP_PROTO=tcp", "WEB_APP_PORT_80_TCP_PORT=80",
			"WEB_APP_PORT_80_TCP_ADDR=10.96.0.20", "WEB_APP_PORT_9090_UDP=udp://10.96.0.20:9090",
		}, not: []string{"HEADLESS_"}},
		{name: "userspace proxy", proxy: userspace, want: []string{
			"WEB_APP_SERVICE_HOST=127.0.0.1", "WEB_APP_SERVICE_PORT=40001", "WEB_APP_SERVICE_PORT_HTTP=40001",
			"WEB_APP_SERVICE_PORT_METRICS=40002", "WEB_APP_PORT=tcp://127.0.0.1:40001",
			"WEB_APP_PORT_80_TCP_ADDR=127.0.0.1", "WEB_APP_PORT_80_TCP_PORT=40001",
		}, not: []string{"10.96.0.20"}},
		{name: "service links off", links: &off, not: []string{"WEB_APP_"}},
		{name: "pod env wins", env: []corev1.EnvVar{{Name: "WEB_APP_SERVICE_HOST", Value: "mine"}},
			want: []string{"WEB_APP_SERVICE_HOST=mine", "WEB_APP_SERVICE_PORT=80"}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			node := "env-" + string(rune('a'+i))
			n := runNode(t, cs, agent.Config{NodeName: node, ServiceAddr: tt.proxy})
			p := shPod("env-"+node, "env", corev1.RestartPolicyNever)
			p.Spec.NodeName = node
			p.Spec.EnableServiceLinks = tt.links
			p.Spec.Containers[0].Env = tt.env
			create(t, cs, p)
			p = waitPod(t, cs, p.Name, "Succeeded", phase(corev1.PodSucceeded))
			log := logOf(t, n, p, "main")
			for _, w := range tt.want {
				if !strings.Contains(log, " "+w+"\n") {
					t.Errorf("missing %s in:\n%s", w, log)
				}
			}
			for _, w := range tt.not {
				if strings.Contains(log, w) {
					t.Errorf("unexpected %s in:\n%s", w, log)
				}
			}
		})
	}
}
