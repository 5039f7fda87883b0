package proxy

import (
	"bufio"
	"bytes"
	"slices"
	"strings"
)

// A full sync normally writes with iptables-restore --noflush, leaving
// other programs' rules alone. When the nat and filter tables hold nothing
// but the proxy's chains and hooks (a node namespace of its own, a fresh
// host), the full sync replaces both tables instead: iptables-nft-restore
// is several times faster without --noflush with thousands of chains, and
// nothing else is lost. See RATIONALE.md ("(Network) Which iptables
// backend, and why both?").

// builtinChains are the built-in chains of the tables the proxy writes.
var builtinChains = map[string][]string{
	"nat":    {"PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"},
	"filter": {"INPUT", "FORWARD", "OUTPUT"},
}

// tableSnapshot is what iptables-save shows of one table.
type tableSnapshot struct {
	policies map[string]string // built-in chain -> policy
	chains   []string          // user-defined chains
	rules    []string          // "-A CHAIN ..." lines
}

// parseSave reads one table of iptables-save output.
func parseSave(out []byte) tableSnapshot {
	s := tableSnapshot{policies: map[string]string{}}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		switch {
		case strings.HasPrefix(l, ":"):
			f := strings.Fields(l[1:])
			if len(f) >= 2 && f[1] != "-" {
				s.policies[f[0]] = f[1]
			} else if len(f) >= 1 {
				s.chains = append(s.chains, f[0])
			}
		case strings.HasPrefix(l, "-A "):
			s.rules = append(s.rules, l)
		}
	}
	return s
}

// hookLines are the proxy's hook rules of table as iptables-save prints
// them.
func hookLines(table string) []string {
	var out []string
	for _, h := range hooks {
		if h.table == table {
			out = append(out, "-A "+h.chain+" "+strings.Join(h.rule, " "))
		}
	}
	return out
}

// exclusive reports whether a table holds only the proxy's things: every
// user chain is a KUBE- chain and every rule outside them is a hook.
func (s tableSnapshot) exclusive(table string) bool {
	for _, c := range s.chains {
		if !strings.HasPrefix(c, "KUBE-") {
			return false
		}
	}
	hl := hookLines(table)
	for _, r := range s.rules {
		chain, _, _ := strings.Cut(strings.TrimPrefix(r, "-A "), " ")
		if strings.HasPrefix(chain, "KUBE-") {
			continue
		}
		if !slices.Contains(hl, r) {
			return false
		}
	}
	return true
}

// fullPayload writes a whole table for iptables-restore without
// --noflush: the built-in chains with their current policies and the
// proxy's hooks, then every chain of want.
func fullPayload(b *strings.Builder, table string, snap tableSnapshot, want ruleset) {
	b.WriteString("*" + table + "\n")
	for _, c := range builtinChains[table] {
		policy := snap.policies[c]
		if policy == "" {
			policy = "ACCEPT"
		}
		b.WriteString(":" + c + " " + policy + " [0:0]\n")
	}
	names := make([]string, 0, len(want))
	for c := range want {
		names = append(names, c)
	}
	slices.Sort(names)
	for _, c := range names {
		b.WriteString(":" + c + " - [0:0]\n")
	}
	for _, l := range hookLines(table) {
		b.WriteString(l + "\n")
	}
	for _, c := range names {
		b.WriteString(want[c])
	}
	b.WriteString("COMMIT\n")
}

// snapshot reads the nat and filter tables.
func (t tools) snapshot(netns string) (map[string]tableSnapshot, error) {
	res := map[string]tableSnapshot{}
	for table := range builtinChains {
		out, err := t.saveOutput(netns, table)
		if err != nil {
			return nil, err
		}
		res[table] = parseSave(out)
	}
	return res, nil
}
