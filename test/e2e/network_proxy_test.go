package e2e

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	mdns "github.com/miekg/dns"

	"github.com/tugboat-dev/tugboat/internal/testenv"
)

// dnsServing finds the local node's DNS address in the server's log.
var dnsServing = regexp.MustCompile(`msg="cluster DNS serving" addr=(\S+)`)

// TestNetworkUserspaceProxyAndDNS checks, through the real binary and
// kubectl, the server's own node network without a pod network: the
// default kubernetes Service, hand-written Endpoints of a selector-less
// Service mirrored into EndpointSlices, the userspace proxy forwarding a
// node port to a Go HTTP server on 127.0.0.1, the DNS names (A, SRV,
// headless, NXDOMAIN, nothing forwarded), and that deleting the Endpoints
// stops the traffic. Everything stays on loopback.
func TestNetworkUserspaceProxyAndDNS(t *testing.T) {
	skipShort(t)
	var hits atomic.Int64
	backend := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		hits.Add(1)
		io.WriteString(w, "hello from the backend")
	})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go backend.Serve(ln)
	t.Cleanup(func() { backend.Close() })
	backendPort := ln.Addr().(*net.TCPAddr).Port

	// The node port is a port free on this machine, so the proxy can bind it.
	nodePort := freePort(t)
	s := testenv.StartServer(t, "--proxy-mode", "userspace", "--proxy-nodeport-address", "127.0.0.1",
		"--dns-listen", "127.0.0.1:0", "--service-node-port-range", strconv.Itoa(nodePort))
	k := newKubectl(t, s)
	var dnsAddr string
	eventually(t, "the DNS server's address in the server log", func() string {
		if m := dnsServing.FindStringSubmatch(s.Output()); m != nil {
			dnsAddr = m[1]
			return ""
		}
		return "no \"cluster DNS serving\" line"
	})

	t.Run("kubernetes service", func(t *testing.T) {
		u, err := url.Parse(s.URL)
		if err != nil {
			t.Fatal(err)
		}
		eventually(t, "default/kubernetes endpoints", func() string {
			got := k.jsonpath(t, "endpoints/kubernetes", `{.subsets[0].addresses[0].ip}:{.subsets[0].ports[0].port}`)
			if got != u.Host {
				return got
			}
			return ""
		})
		if got := k.jsonpath(t, "service/kubernetes", `{.spec.clusterIP} {.spec.ports[0].name} {.spec.ports[0].port}`); got != "10.96.0.1 https 443" {
			t.Errorf("service kubernetes: %q, want 10.96.0.1 https 443", got)
		}
		if got := k.jsonpath(t, "endpointslice/kubernetes", `{.endpoints[0].addresses[0]}:{.ports[0].port}`); got != u.Host {
			t.Errorf("endpointslice kubernetes: %q, want %s", got, u.Host)
		}
	})

	k.apply(t, fmt.Sprintf(`
apiVersion: v1
kind: Service
metadata: {name: external-service}
spec:
  type: NodePort
  ports: [{name: http, port: 80, nodePort: %[1]d}]
---
apiVersion: v1
kind: Endpoints
metadata: {name: external-service}
subsets:
- addresses: [{ip: 127.0.0.1}]
  ports: [{name: http, port: %[2]d}]
---
apiVersion: v1
kind: Service
metadata: {name: db}
spec:
  clusterIP: None
  ports: [{name: pg, port: 5432}]
---
apiVersion: v1
kind: Endpoints
metadata: {name: db}
subsets:
- addresses: [{ip: 127.0.0.1, hostname: db-0}]
  ports: [{name: pg, port: 5432}]
`, nodePort, backendPort))
	clusterIP := k.jsonpath(t, "service/external-service", "{.spec.clusterIP}")

	eventually(t, "endpoints mirrored into an EndpointSlice", func() string {
		got := k.jsonpath(t, "endpointslices", `{range .items[?(@.metadata.labels.kubernetes\.io/service-name=="external-service")]}{.metadata.labels.endpointslice\.kubernetes\.io/managed-by} {.endpoints[0].addresses[0]} {.ports[0].port}{end}`)
		if want := fmt.Sprintf("endpointslicemirroring-controller.k8s.io 127.0.0.1 %d", backendPort); got != want {
			return fmt.Sprintf("%q, want %q", got, want)
		}
		return ""
	})

	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}} // each request is a new proxied connection
	get := func() (string, error) {
		resp, err := client.Get(fmt.Sprintf("http://127.0.0.1:%d/", nodePort))
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return string(b), err
	}
	t.Run("userspace proxy forwards the node port", func(t *testing.T) {
		eventually(t, "a request through the node port", func() string {
			body, err := get()
			if err != nil || body != "hello from the backend" {
				return fmt.Sprintf("%q, %v", body, err)
			}
			return ""
		})
		if hits.Load() == 0 {
			t.Errorf("the backend saw no request")
		}
	})

	t.Run("dns", func(t *testing.T) {
		c := &mdns.Client{}
		query := func(name string, qtype uint16) (*mdns.Msg, error) {
			q := new(mdns.Msg)
			q.SetQuestion(name, qtype)
			r, _, err := c.Exchange(q, dnsAddr)
			return r, err
		}
		describe := func(r *mdns.Msg) string {
			var out []string
			for _, rr := range r.Answer {
				switch v := rr.(type) {
				case *mdns.A:
					out = append(out, "A "+v.A.String())
				case *mdns.SRV:
					out = append(out, fmt.Sprintf("SRV %s %d", v.Target, v.Port))
				default:
					out = append(out, rr.String())
				}
			}
			slices.Sort(out)
			return mdns.RcodeToString[r.Rcode] + " " + strings.Join(out, ",")
		}
		tests := []struct {
			name  string
			qtype uint16
			want  string
		}{
			{"external-service.default.svc.cluster.local.", mdns.TypeA, "NOERROR A " + clusterIP},
			{"kubernetes.default.svc.cluster.local.", mdns.TypeA, "NOERROR A 10.96.0.1"},
			{"_http._tcp.external-service.default.svc.cluster.local.", mdns.TypeSRV, "NOERROR SRV external-service.default.svc.cluster.local. 80"},
			{"db.default.svc.cluster.local.", mdns.TypeA, "NOERROR A 127.0.0.1"},
			{"db-0.db.default.svc.cluster.local.", mdns.TypeA, "NOERROR A 127.0.0.1"},
			{"_pg._tcp.db.default.svc.cluster.local.", mdns.TypeSRV, "NOERROR SRV db-0.db.default.svc.cluster.local. 5432"},
			{"missing.default.svc.cluster.local.", mdns.TypeA, "NXDOMAIN "},
			{"example.com.", mdns.TypeA, "REFUSED "},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				// Headless records follow the mirrored slice: wait for it.
				eventually(t, tc.name, func() string {
					r, err := query(tc.name, tc.qtype)
					if err != nil {
						return err.Error()
					}
					if got := describe(r); got != tc.want {
						return fmt.Sprintf("%q, want %q", got, tc.want)
					}
					return ""
				})
			})
		}
	})

	t.Run("deleting the endpoints stops the traffic", func(t *testing.T) {
		k.run(t, "delete", "endpoints", "external-service")
		eventually(t, "the mirrored slice goes", func() string {
			if got := k.jsonpath(t, "endpointslices", `{.items[*].metadata.labels.kubernetes\.io/service-name}`); strings.Contains(got, "external-service") {
				return got
			}
			return ""
		})
		eventually(t, "requests through the node port fail", func() string {
			if body, err := get(); err == nil {
				return fmt.Sprintf("still answered %q", body)
			}
			return ""
		})
		before := hits.Load()
		if body, err := get(); err == nil {
			t.Errorf("request after the endpoints went: %q, want a failure", body)
		}
		if hits.Load() != before {
			t.Errorf("the backend still receives requests")
		}
	})
}
