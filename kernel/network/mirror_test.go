package network_test

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/tugboat-dev/tugboat/kernel/network"
)

func TestMirrorSlices(t *testing.T) {
	tests := []struct {
		name    string
		subsets []corev1.EndpointSubset
		want    []string // per slice: addressType ports endpoints(ip/ready)
	}{
		{name: "empty", want: nil},
		{
			name: "subsets with equal ports merge",
			subsets: []corev1.EndpointSubset{
				{Addresses: []corev1.EndpointAddress{{IP: "10.0.0.2"}}, Ports: []corev1.EndpointPort{{Name: "http", Port: 80}}},
				{Addresses: []corev1.EndpointAddress{{IP: "10.0.0.1"}}, NotReadyAddresses: []corev1.EndpointAddress{{IP: "10.0.0.3"}},
					Ports: []corev1.EndpointPort{{Name: "http", Port: 80}}},
			},
			want: []string{"IPv4 http/TCP/80 10.0.0.1/true,10.0.0.2/true,10.0.0.3/false"},
		},
		{
			name: "distinct ports and families split",
			subsets: []corev1.EndpointSubset{
				{Addresses: []corev1.EndpointAddress{{IP: "10.0.0.1"}, {IP: "fd00::1"}}, Ports: []corev1.EndpointPort{{Name: "a", Port: 1, Protocol: corev1.ProtocolUDP}}},
				{Addresses: []corev1.EndpointAddress{{IP: "10.0.0.2"}, {IP: "not-an-ip"}}, Ports: []corev1.EndpointPort{{Name: "b", Port: 2}}},
			},
			want: []string{"IPv4 a/UDP/1 10.0.0.1/true", "IPv4 b/TCP/2 10.0.0.2/true", "IPv6 a/UDP/1 fd00::1/true"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ep := &corev1.Endpoints{ObjectMeta: metav1.ObjectMeta{Name: "ext", Namespace: "ns", UID: "u1", Labels: map[string]string{"team": "x"}}, Subsets: tc.subsets}
			got := network.MirrorSlices(ep)
			var desc []string
			names := map[string]bool{}
			for _, s := range got {
				desc = append(desc, describeSlice(s))
				names[s.Name] = true
				if s.Labels[discoveryv1.LabelServiceName] != "ext" || s.Labels[discoveryv1.LabelManagedBy] != network.MirrorManagedBy || s.Labels["team"] != "x" {
					t.Errorf("slice %s labels %v", s.Name, s.Labels)
				}
				if len(s.OwnerReferences) != 1 || s.OwnerReferences[0].Kind != "Endpoints" || s.OwnerReferences[0].UID != "u1" {
					t.Errorf("slice %s owners %+v, want the Endpoints", s.Name, s.OwnerReferences)
				}
				if !strings.HasPrefix(s.Name, "ext-") {
					t.Errorf("slice name %q, want ext-<hash>", s.Name)
				}
			}
			slices.Sort(desc)
			if !slices.Equal(desc, tc.want) {
				t.Errorf("slices\n %q\nwant\n %q", desc, tc.want)
			}
			if len(names) != len(got) {
				t.Errorf("slice names not unique: %v", names)
			}
			if again := network.MirrorSlices(ep); len(again) != len(got) || (len(got) > 0 && again[0].Name != got[0].Name) {
				t.Errorf("names not stable")
			}
		})
	}
}

func describeSlice(s *discoveryv1.EndpointSlice) string {
	var ports, eps []string
	for _, p := range s.Ports {
		ports = append(ports, fmt.Sprintf("%s/%s/%d", *p.Name, *p.Protocol, *p.Port))
	}
	for _, e := range s.Endpoints {
		eps = append(eps, fmt.Sprintf("%s/%t", e.Addresses[0], *e.Conditions.Ready))
	}
	return string(s.AddressType) + " " + strings.Join(ports, ",") + " " + strings.Join(eps, ",")
}

// mirroredSlices describes the mirrored slices of service ns/name.
func mirroredSlices(ctx context.Context, cs kubernetes.Interface, ns, name string) ([]string, error) {
	list, err := cs.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{
		LabelSelector: discoveryv1.LabelServiceName + "=" + name + "," + discoveryv1.LabelManagedBy + "=" + network.MirrorManagedBy})
	if err != nil {
		return nil, err
	}
	var out []string
	for i := range list.Items {
		out = append(out, describeSlice(&list.Items[i]))
	}
	slices.Sort(out)
	return out, nil
}

// waitSlices waits until the mirrored slices of ns/name are want.
func waitSlices(t testing.TB, cs kubernetes.Interface, ns, name string, want ...string) {
	t.Helper()
	ctx := ctxT(t)
	for {
		got, err := mirroredSlices(ctx, cs, ns, name)
		if err == nil && slices.Equal(got, want) {
			return
		}
		if ctx.Err() != nil {
			t.Fatalf("mirrored slices of %s/%s: %q (%v), want %q", ns, name, got, err, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestEndpointsMirror(t *testing.T) {
	cs := newClient(t)
	ctx := ctxT(t)
	m, err := network.NewEndpointsMirror(cs, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(runCtx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	}()

	svc := func(name string, selector map[string]string) *corev1.Service {
		return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.ServiceSpec{
			Selector: selector, Ports: []corev1.ServicePort{{Name: "http", Port: 80}}}}
	}
	endpoints := func(name string, labels map[string]string, ips ...string) *corev1.Endpoints {
		ep := &corev1.Endpoints{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
		var addrs []corev1.EndpointAddress
		for _, ip := range ips {
			addrs = append(addrs, corev1.EndpointAddress{IP: ip})
		}
		ep.Subsets = []corev1.EndpointSubset{{Addresses: addrs, Ports: []corev1.EndpointPort{{Name: "http", Port: 8080}}}}
		return ep
	}
	svcs, eps := cs.CoreV1().Services("default"), cs.CoreV1().Endpoints("default")
	mustCreate := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("create: %v", err)
		}
	}
	create := func(s *corev1.Service, e *corev1.Endpoints) {
		t.Helper()
		_, err := svcs.Create(ctx, s, metav1.CreateOptions{})
		mustCreate(err)
		_, err = eps.Create(ctx, e, metav1.CreateOptions{})
		mustCreate(err)
	}

	// Endpoints written before the Service are mirrored once it exists.
	_, err = eps.Create(ctx, endpoints("external", nil, "192.0.2.1", "192.0.2.2"), metav1.CreateOptions{})
	mustCreate(err)
	_, err = svcs.Create(ctx, svc("external", nil), metav1.CreateOptions{})
	mustCreate(err)
	waitSlices(t, cs, "default", "external", "IPv4 http/TCP/8080 192.0.2.1/true,192.0.2.2/true")

	// Services with a selector and skip-mirror Endpoints are left alone.
	create(svc("selected", map[string]string{"app": "web"}), endpoints("selected", nil, "192.0.2.3"))
	create(svc("skipped", nil), endpoints("skipped", map[string]string{discoveryv1.LabelSkipMirror: "true"}, "192.0.2.4"))

	t.Run("update", func(t *testing.T) {
		if _, err := eps.Update(ctx, endpoints("external", nil, "192.0.2.2", "192.0.2.9"), metav1.UpdateOptions{}); err != nil {
			t.Fatalf("update endpoints: %v", err)
		}
		waitSlices(t, cs, "default", "external", "IPv4 http/TCP/8080 192.0.2.2/true,192.0.2.9/true")
	})
	t.Run("a deleted slice is recreated", func(t *testing.T) {
		list, err := cs.DiscoveryV1().EndpointSlices("default").List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=external"})
		if err != nil || len(list.Items) != 1 {
			t.Fatalf("list slices: %v (%d items)", err, len(list.Items))
		}
		if err := cs.DiscoveryV1().EndpointSlices("default").Delete(ctx, list.Items[0].Name, metav1.DeleteOptions{}); err != nil {
			t.Fatalf("delete slice: %v", err)
		}
		waitSlices(t, cs, "default", "external", "IPv4 http/TCP/8080 192.0.2.2/true,192.0.2.9/true")
	})
	t.Run("deleting the endpoints deletes the slices", func(t *testing.T) {
		if err := eps.Delete(ctx, "external", metav1.DeleteOptions{}); err != nil {
			t.Fatalf("delete endpoints: %v", err)
		}
		waitSlices(t, cs, "default", "external")
	})
	t.Run("a selector stops mirroring", func(t *testing.T) {
		create(svc("later", nil), endpoints("later", nil, "192.0.2.5"))
		waitSlices(t, cs, "default", "later", "IPv4 http/TCP/8080 192.0.2.5/true")
		s, err := svcs.Get(ctx, "later", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		s.Spec.Selector = map[string]string{"app": "later"}
		if _, err := svcs.Update(ctx, s, metav1.UpdateOptions{}); err != nil {
			t.Fatalf("update service: %v", err)
		}
		waitSlices(t, cs, "default", "later")
	})
	// "later" was handled after "selected" and "skipped" were created:
	// the single worker has seen them, and mirrored nothing.
	for _, name := range []string{"selected", "skipped"} {
		if got, err := mirroredSlices(ctx, cs, "default", name); err != nil || len(got) != 0 {
			t.Errorf("%s: mirrored %q (%v), want none", name, got, err)
		}
	}
}
