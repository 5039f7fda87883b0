package proxy

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"

	"github.com/coreos/go-iptables/iptables"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/tugboat-dev/tugboat/kernel/errdefs"
	"github.com/tugboat-dev/tugboat/kernel/network/bridge"
)

// IptablesConfig configures an Iptables proxy.
type IptablesConfig struct {
	// NetNS is the path of the network namespace to program; "" is the
	// caller's (the node agent's, in production).
	NetNS string
	// ClusterCIDR is the pod range: traffic to a cluster IP from outside
	// it is masqueraded. The zero Prefix masquerades all of it.
	ClusterCIDR netip.Prefix
	// KeepRules leaves the rules in place on Close (so that Services keep
	// working across an agent restart).
	KeepRules bool
	// Backend is "legacy" or "nft" (iptables' two kernel interfaces), or
	// "" to pick like Kubernetes' iptables-wrapper: the one that already
	// holds more rules in the namespace; on a tie the system iptables's
	// backend (nft on current distributions), else legacy. The iptables,
	// iptables-save and iptables-restore of that backend must be on PATH
	// (the plain names serve if the backend-specific ones are missing).
	Backend string
	// Logger; nil means slog.Default().
	Logger *slog.Logger
}

// hooks are the jumps from the built-in chains into the proxy's chains.
var hooks = []struct {
	table, chain string
	rule         []string
}{
	{"nat", "PREROUTING", []string{"-j", chainServices}},
	{"nat", "OUTPUT", []string{"-j", chainServices}},
	{"nat", "POSTROUTING", []string{"-j", chainPostrouting}},
	{"filter", "OUTPUT", []string{"-m", "conntrack", "--ctstate", "NEW", "-j", chainServices}},
	{"filter", "FORWARD", []string{"-m", "conntrack", "--ctstate", "NEW", "-j", chainServices}},
	{"filter", "INPUT", []string{"-m", "conntrack", "--ctstate", "NEW", "-j", chainExternalServices}},
}

// Iptables is the iptables-mode proxy. Create it with NewIptables; call
// Sync with the current Services and EndpointSlices whenever they change.
type Iptables struct {
	cfg   IptablesConfig
	log   *slog.Logger
	tools tools

	mu sync.Mutex
	// applied is what the last successful sync wrote; nil forces a full
	// sync.
	applied *state
}

// NewIptables validates cfg, checks that the tools are there, and
// returns a proxy that has programmed nothing yet. Errors wrap
// errdefs.ErrInvalid (bad config) or errdefs.ErrUnavailable (missing
// iptables-restore).
func NewIptables(cfg IptablesConfig) (*Iptables, error) {
	if cfg.ClusterCIDR.IsValid() && (!cfg.ClusterCIDR.Addr().Is4() || cfg.ClusterCIDR.Masked() != cfg.ClusterCIDR) {
		return nil, fmt.Errorf("iptables proxy: cluster CIDR %s: want a masked IPv4 prefix: %w", cfg.ClusterCIDR, errdefs.ErrInvalid)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	t, err := pickTools(cfg.NetNS, cfg.Backend)
	if err != nil {
		return nil, fmt.Errorf("iptables proxy: %w", err)
	}
	return &Iptables{cfg: cfg, log: cfg.Logger.With("component", "proxy", "backend", t.backend), tools: t}, nil
}

// Backend says which iptables backend the proxy programs.
func (p *Iptables) Backend() string { return p.tools.backend }

// Sync programs the rules for services and endpointSlices. The first
// sync (and the first after a failure or FullSync) rewrites every chain
// and removes stale per-service chains left by an earlier run; later ones
// rewrite only the chains that changed. Each sync is one atomic
// iptables-restore per table.
func (p *Iptables) Sync(ctx context.Context, services []*corev1.Service, endpointSlices []*discoveryv1.EndpointSlice) error {
	model := buildModel(services, endpointSlices)
	p.mu.Lock()
	defer p.mu.Unlock()
	next := build(model, p.cfg.ClusterCIDR, p.applied)
	have, want := diff(p.applied, next)
	var b strings.Builder
	noflush := true
	if p.applied == nil {
		snap, err := p.tools.snapshot(p.cfg.NetNS)
		if err != nil {
			return fmt.Errorf("list chains: %w", err)
		}
		if snap["nat"].exclusive("nat") && snap["filter"].exclusive("filter") {
			// Only our rules there: replace both tables (see exclusive.go).
			fullPayload(&b, "nat", snap["nat"], want.nat)
			fullPayload(&b, "filter", snap["filter"], want.filter)
			noflush = false
		} else {
			payload(&b, "nat", nil, want.nat, managedOnly(snap["nat"].chains))
			payload(&b, "filter", nil, want.filter, managedOnly(snap["filter"].chains))
		}
	} else {
		payload(&b, "nat", have.nat, want.nat, nil)
		payload(&b, "filter", have.filter, want.filter, nil)
	}
	if b.Len() > 0 {
		if err := p.tools.restore(ctx, p.cfg.NetNS, b.String(), noflush); err != nil {
			p.applied = nil
			return err
		}
	}
	if p.applied == nil {
		if err := p.ensureHooks(); err != nil {
			return err
		}
	}
	p.applied = next
	return nil
}

// FullSync makes the next Sync rewrite everything (a periodic repair of
// rules someone else changed).
func (p *Iptables) FullSync() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.applied = nil
}

// Close removes the proxy's hooks and chains unless KeepRules is set.
func (p *Iptables) Close() error {
	if p.cfg.KeepRules {
		return nil
	}
	return p.tools.cleanup(p.cfg.NetNS)
}

// managedOnly keeps the per-service chains of a chain list.
func managedOnly(chains []string) []string {
	var out []string
	for _, c := range chains {
		if managed(c) {
			out = append(out, c)
		}
	}
	return out
}

// ensureHooks puts the jumps into the proxy's chains first in the
// built-in chains, unless they are there.
func (p *Iptables) ensureHooks() error {
	return bridge.InNetNS(p.cfg.NetNS, func() error {
		ipt, err := iptables.New(iptables.Path(p.tools.iptablesBin))
		if err != nil {
			return fmt.Errorf("iptables: %w", err)
		}
		for _, h := range hooks {
			ok, err := ipt.Exists(h.table, h.chain, h.rule...)
			if err != nil {
				return fmt.Errorf("check %s %s hook: %w", h.table, h.chain, err)
			}
			if !ok {
				if err := ipt.Insert(h.table, h.chain, 1, h.rule...); err != nil {
					return fmt.Errorf("hook %s %s: %w", h.table, h.chain, err)
				}
			}
		}
		return nil
	})
}

// Cleanup removes every hook and chain the iptables proxy creates from the
// namespace at netns ("" is the caller's), whichever process made them,
// in the given backend ("" picks as IptablesConfig.Backend does).
func Cleanup(netns, backend string) error {
	t, err := pickTools(netns, backend)
	if err != nil {
		return err
	}
	return t.cleanup(netns)
}
