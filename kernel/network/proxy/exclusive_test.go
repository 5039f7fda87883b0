package proxy_test

import (
	"context"
	"fmt"
	"log/slog"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/coreos/go-iptables/iptables"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/tugboat-dev/tugboat/kernel/network/bridge"
	"github.com/tugboat-dev/tugboat/kernel/network/nettest"
	"github.com/tugboat-dev/tugboat/kernel/network/proxy"
)

// TestFullSyncKeepsForeignRules checks both ways of a full sync in a
// namespace of its own: with another program's chain and rules present
// they survive (--noflush), and in both cases built-in chain policies are
// kept, the proxy's hooks are there once and stale per-service chains go.
func TestFullSyncKeepsForeignRules(t *testing.T) {
	for _, backend := range []string{"legacy", "nft"} {
		for _, foreign := range []bool{false, true} {
			name := backend + "/only-ours"
			if foreign {
				name = backend + "/foreign-rules"
			}
			t.Run(name, func(t *testing.T) {
				nettest.RequireRoot(t, "iptables-"+backend, "iptables-"+backend+"-save", "iptables-"+backend+"-restore")
				ns := nettest.NewHost(t, "fs")
				ipt := func(f func(*iptables.IPTables) error) {
					t.Helper()
					err := bridge.InNetNS(ns, func() error {
						x, err := iptables.New(iptables.Path("iptables-" + backend))
						if err != nil {
							return err
						}
						return f(x)
					})
					if err != nil {
						t.Fatal(err)
					}
				}
				ipt(func(x *iptables.IPTables) error {
					if err := x.ChangePolicy("filter", "FORWARD", "DROP"); err != nil {
						return err
					}
					if err := x.NewChain("nat", "KUBE-SVC-STALE0000000000"); err != nil {
						return err
					}
					if !foreign {
						return nil
					}
					if err := x.NewChain("nat", "OTHER"); err != nil {
						return err
					}
					if err := x.Append("nat", "OTHER", "-s", "192.0.2.1/32", "-j", "RETURN"); err != nil {
						return err
					}
					return x.Append("filter", "INPUT", "-s", "192.0.2.99/32", "-j", "DROP")
				})
				p, err := proxy.NewIptables(proxy.IptablesConfig{NetNS: ns, Backend: backend, Logger: slog.New(slog.DiscardHandler)})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { p.Close() })
				n := &node{pods: map[string]bridge.Attachment{}}
				if err := p.Sync(context.Background(), []*corev1.Service{webService(false)}, []*discoveryv1.EndpointSlice{n.slice(nil)}); err != nil {
					t.Fatalf("sync: %v", err)
				}
				ipt(func(x *iptables.IPTables) error {
					natChains, err := x.ListChains("nat")
					if err != nil {
						return err
					}
					if slices.Contains(natChains, "KUBE-SVC-STALE0000000000") || !slices.Contains(natChains, "KUBE-SERVICES") {
						t.Errorf("nat chains %v: want KUBE-SERVICES and no stale chain", natChains)
					}
					if foreign {
						if ok, err := x.Exists("nat", "OTHER", "-s", "192.0.2.1/32", "-j", "RETURN"); err != nil || !ok {
							t.Errorf("foreign nat rule gone (%v)", err)
						}
						if ok, err := x.Exists("filter", "INPUT", "-s", "192.0.2.99/32", "-j", "DROP"); err != nil || !ok {
							t.Errorf("foreign filter rule gone (%v)", err)
						}
					}
					rules, err := x.List("filter", "FORWARD")
					if err != nil {
						return err
					}
					if rules[0] != "-P FORWARD DROP" {
						t.Errorf("filter FORWARD: %q, want the DROP policy kept", rules)
					}
					hooks := 0
					for _, r := range rules {
						if r == "-A FORWARD -m conntrack --ctstate NEW -j KUBE-SERVICES" {
							hooks++
						}
					}
					if hooks != 1 {
						t.Errorf("filter FORWARD: %q, want the proxy's hook once", rules)
					}
					return nil
				})
			})
		}
	}
}

// TestBackendChoice checks the automatic backend: the one holding more
// rules, else the system iptables's.
func TestBackendChoice(t *testing.T) {
	nettest.RequireRoot(t, "iptables", "iptables-legacy", "iptables-legacy-save", "iptables-nft", "iptables-nft-save", "iptables-nft-restore")
	out, err := exec.Command("iptables", "--version").Output()
	if err != nil {
		t.Fatal(err)
	}
	system := "legacy"
	if strings.Contains(string(out), "nf_tables") {
		system = "nft"
	}
	tests := []struct {
		name  string
		rules map[string]int // backend -> rules to add first
		want  string
	}{
		{"fresh namespace: the system's", nil, system},
		{"more nft rules", map[string]int{"nft": 2, "legacy": 1}, "nft"},
		{"more legacy rules", map[string]int{"legacy": 2, "nft": 1}, "legacy"},
		{"10 legacy rules win", map[string]int{"legacy": 10, "nft": 20}, "legacy"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ns := nettest.NewHost(t, "pick")
			err := bridge.InNetNS(ns, func() error {
				for backend, n := range tc.rules {
					x, err := iptables.New(iptables.Path("iptables-" + backend))
					if err != nil {
						return err
					}
					for i := range n {
						if err := x.Append("filter", "INPUT", "-s", fmt.Sprintf("192.0.2.%d/32", i+1), "-j", "ACCEPT"); err != nil {
							return err
						}
					}
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			p, err := proxy.NewIptables(proxy.IptablesConfig{NetNS: ns, Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				t.Fatal(err)
			}
			if got := p.Backend(); got != tc.want {
				t.Errorf("backend %s, want %s", got, tc.want)
			}
		})
	}
}
