package proxy

import (
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// Chain names, as kube-proxy's.
const (
	chainServices         = "KUBE-SERVICES"
	chainExternalServices = "KUBE-EXTERNAL-SERVICES"
	chainNodePorts        = "KUBE-NODEPORTS"
	chainMarkMasq         = "KUBE-MARK-MASQ"
	chainPostrouting      = "KUBE-POSTROUTING"
)

// masqMark is the fwmark bit that asks KUBE-POSTROUTING to masquerade.
const masqMark = "0x4000"

// managed reports whether a chain name is one of the per-service chains
// the proxy creates and deletes.
func managed(chain string) bool {
	return strings.HasPrefix(chain, "KUBE-SVC-") || strings.HasPrefix(chain, "KUBE-SEP-") || strings.HasPrefix(chain, "KUBE-EXT-")
}

// ruleset is the rules of one table: each chain's rules as the lines
// iptables-restore takes ("-A CHAIN ..."), joined by newlines.
type ruleset map[string]string

// tables are the desired nat and filter rules.
type tables struct {
	nat, filter ruleset
}

// fragment is the rules of one service port: its own chains and its
// lines in the shared chains. Fragments are immutable once built.
type fragment struct {
	// sig is everything the rules depend on; an equal sig means equal
	// rules, so a sync reuses the fragment and writes none of its chains.
	sig                                    string
	chains                                 ruleset // KUBE-SVC-, KUBE-EXT-, KUBE-SEP- chains (nat)
	services, nodePorts, rejects, external string  // lines in the shared chains
}

// state is the full desired (or applied) rules: a fragment per service
// port (by name and protocol) and the shared chains.
type state struct {
	ports       map[string]*fragment
	nat, filter ruleset // the shared chains only
	clusterCIDR netip.Prefix
}

// build computes the rules for the model, reusing prev's fragments of
// unchanged service ports. clusterCIDR, if valid, is the pod range:
// cluster-IP traffic from outside it is masqueraded (like kube-proxy's
// --cluster-cidr); if invalid, all of it is.
func build(model []servicePort, clusterCIDR netip.Prefix, prev *state) *state {
	st := &state{ports: make(map[string]*fragment, len(model)), nat: ruleset{}, filter: ruleset{}, clusterCIDR: clusterCIDR}
	var svcs, nodePorts, rejects, extRejects strings.Builder
	for i := range model {
		sp := &model[i]
		key, sig := sp.name+"/"+string(sp.protocol), sp.signature()
		f := (*fragment)(nil)
		if prev != nil && prev.clusterCIDR == clusterCIDR {
			if pf := prev.ports[key]; pf != nil && pf.sig == sig {
				f = pf
			}
		}
		if f == nil {
			f = renderPort(sp, clusterCIDR)
			f.sig = sig
		}
		st.ports[key] = f
		svcs.WriteString(f.services)
		nodePorts.WriteString(f.nodePorts)
		rejects.WriteString(f.rejects)
		extRejects.WriteString(f.external)
	}
	line(&svcs, chainServices, " -m addrtype --dst-type LOCAL", " -j "+chainNodePorts)
	st.nat[chainServices] = svcs.String()
	st.nat[chainNodePorts] = nodePorts.String()
	st.nat[chainMarkMasq] = "-A " + chainMarkMasq + " -j MARK --or-mark " + masqMark + "\n"
	st.nat[chainPostrouting] = "-A " + chainPostrouting + " -m mark ! --mark " + masqMark + "/" + masqMark + " -j RETURN\n" +
		"-A " + chainPostrouting + " -j MARK --xor-mark " + masqMark + "\n" +
		"-A " + chainPostrouting + " -j MASQUERADE\n"
	st.filter[chainServices] = rejects.String()
	st.filter[chainExternalServices] = extRejects.String()
	return st
}

// signature is a string that differs whenever the rules of sp would.
func (sp *servicePort) signature() string {
	var b strings.Builder
	b.Grow(64 + 22*len(sp.endpoints))
	b.WriteString(sp.clusterIP.String())
	b.WriteByte(' ')
	b.WriteString(strconv.Itoa(int(sp.port)))
	b.WriteByte(' ')
	b.WriteString(strconv.Itoa(int(sp.nodePort)))
	b.WriteByte(' ')
	b.WriteString(strconv.Itoa(int(sp.affinity)))
	for _, e := range sp.external {
		b.WriteString(" x")
		b.WriteString(e.String())
	}
	for _, e := range sp.endpoints {
		b.WriteString(" e")
		b.WriteString(e.String())
	}
	return b.String()
}

// renderPort computes one service port's rules.
func renderPort(sp *servicePort, clusterCIDR netip.Prefix) *fragment {
	f := &fragment{chains: ruleset{}}
	var svcs, nodePorts, rejects, extRejects, b strings.Builder
	svc, ext := svcChain(sp), extChain(sp)
	proto, port := sp.proto(), portString(sp.port)
	dst := " -d " + sp.clusterIP.String() + "/32 -p " + proto + " -m " + proto + " --dport " + port
	if len(sp.endpoints) == 0 {
		// No ready endpoint: refuse at once rather than time out.
		line(&rejects, chainServices, dst, " -j REJECT")
		for _, e := range sp.external {
			line(&rejects, chainServices, " -d "+e.String()+"/32 -p "+proto+" -m "+proto+" --dport "+port, " -j REJECT")
		}
		if sp.nodePort != 0 {
			line(&extRejects, chainExternalServices, " -m addrtype --dst-type LOCAL -p "+proto+" -m "+proto+" --dport "+portString(sp.nodePort), " -j REJECT")
		}
		f.rejects, f.external = rejects.String(), extRejects.String()
		return f
	}
	line(&svcs, chainServices, dst, " -j "+svc)
	if sp.nodePort != 0 || len(sp.external) > 0 {
		for _, e := range sp.external {
			line(&svcs, chainServices, " -d "+e.String()+"/32 -p "+proto+" -m "+proto+" --dport "+port, " -j "+ext)
		}
		if sp.nodePort != 0 {
			line(&nodePorts, chainNodePorts, " -p "+proto+" -m "+proto+" --dport "+portString(sp.nodePort), " -j "+ext)
		}
		line(&b, ext, "", " -j "+chainMarkMasq)
		line(&b, ext, "", " -j "+svc)
		f.chains[ext] = b.String()
	}
	f.services, f.nodePorts = svcs.String(), nodePorts.String()

	b.Reset()
	if clusterCIDR.IsValid() {
		line(&b, svc, " ! -s "+clusterCIDR.String()+dst, " -j "+chainMarkMasq)
	} else {
		line(&b, svc, dst, " -j "+chainMarkMasq)
	}
	seps := make([]string, len(sp.endpoints))
	for j, ep := range sp.endpoints {
		seps[j] = sepChain(sp, ep)
	}
	if sp.affinity > 0 {
		secs := strconv.Itoa(int(sp.affinity))
		for _, sep := range seps {
			line(&b, svc, " -m recent --name "+sep+" --mask 255.255.255.255 --rsource --rcheck --seconds "+secs+" --reap", " -j "+sep)
		}
	}
	for j, sep := range seps {
		if left := len(seps) - j; left > 1 {
			line(&b, svc, " -m statistic --mode random --probability "+probability(left), " -j "+sep)
		} else {
			line(&b, svc, "", " -j "+sep)
		}
	}
	f.chains[svc] = b.String()

	for j, ep := range sp.endpoints {
		b.Reset()
		line(&b, seps[j], " -s "+ep.Addr().String()+"/32", " -j "+chainMarkMasq)
		recent := ""
		if sp.affinity > 0 {
			recent = " -m recent --name " + seps[j] + " --mask 255.255.255.255 --rsource --set"
		}
		line(&b, seps[j], " -p "+proto+recent+" -m "+proto, " -j DNAT --to-destination "+ep.String())
		f.chains[seps[j]] = b.String()
	}
	return f
}

// render computes the complete rules for the model.
func render(model []servicePort, clusterCIDR netip.Prefix) tables {
	st := build(model, clusterCIDR, nil)
	t := tables{nat: maps.Clone(st.nat), filter: maps.Clone(st.filter)}
	for _, f := range st.ports {
		maps.Copy(t.nat, f.chains)
	}
	return t
}

// diff reduces the move from prev (nil: unknown) to next to the chains
// involved: have holds prev's version of every shared chain and of the
// chains of changed or removed service ports, want next's version of the
// shared chains and of the chains of changed or new ones. With prev nil,
// have is nil and want is everything.
func diff(prev, next *state) (have, want tables) {
	want = tables{nat: maps.Clone(next.nat), filter: maps.Clone(next.filter)}
	if prev != nil {
		have = tables{nat: maps.Clone(prev.nat), filter: maps.Clone(prev.filter)}
	}
	for k, f := range next.ports {
		var pf *fragment
		if prev != nil {
			pf = prev.ports[k]
		}
		if pf == f {
			continue
		}
		maps.Copy(want.nat, f.chains)
		if pf != nil {
			maps.Copy(have.nat, pf.chains)
		}
	}
	if prev != nil {
		for k, pf := range prev.ports {
			if _, ok := next.ports[k]; !ok {
				maps.Copy(have.nat, pf.chains)
			}
		}
	}
	return have, want
}

func line(b *strings.Builder, chain, match, target string) {
	b.WriteString("-A ")
	b.WriteString(chain)
	b.WriteString(match)
	b.WriteString(target)
	b.WriteByte('\n')
}

// probability is 1/n with the precision kube-proxy uses.
func probability(n int) string {
	return strconv.FormatFloat(1/float64(n), 'f', 10, 64)
}

// payload writes the iptables-restore input turning table `have` into
// `want`: every chain whose rules differ is declared (which flushes it)
// and refilled, and every managed chain of have (or of stale) that want
// lacks is deleted. With have nil, every chain of want is written.
func payload(b *strings.Builder, table string, have, want ruleset, stale []string) {
	var changed, gone []string
	for chain, rules := range want {
		if old, ok := have[chain]; !ok || old != rules || have == nil {
			changed = append(changed, chain)
		}
	}
	for chain := range have {
		if _, ok := want[chain]; !ok && managed(chain) {
			gone = append(gone, chain)
		}
	}
	for _, chain := range stale {
		if _, ok := want[chain]; !ok && managed(chain) && !slices.Contains(gone, chain) {
			gone = append(gone, chain)
		}
	}
	if len(changed) == 0 && len(gone) == 0 {
		return
	}
	slices.Sort(changed)
	slices.Sort(gone)
	b.WriteString("*" + table + "\n")
	for _, chain := range changed {
		b.WriteString(":" + chain + " - [0:0]\n")
	}
	for _, chain := range gone {
		b.WriteString(":" + chain + " - [0:0]\n")
	}
	for _, chain := range changed {
		b.WriteString(want[chain])
	}
	for _, chain := range gone {
		b.WriteString("-X " + chain + "\n")
	}
	b.WriteString("COMMIT\n")
}
