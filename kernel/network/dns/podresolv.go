package dns

import (
	"bufio"
	"bytes"
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// Limits kubelet applies to a pod's resolv.conf (and the API server
// validates in dnsConfig).
const (
	maxNameservers = 3
	maxSearches    = 32
)

// PodResolv is the resolv.conf of a pod with its own network namespace, as
// kubelet composes it from spec.dnsPolicy and spec.dnsConfig:
//   - ClusterFirst (the default) and ClusterFirstWithHostNet: the cluster
//     DNS at nameserver, the pod's search path in zone and ndots:5; without
//     a cluster DNS (nameserver not valid) the pod falls back to Default;
//   - Default: the node's resolv.conf (host, the file's content);
//   - None: nothing but dnsConfig.
//
// dnsConfig's nameservers and searches are appended (without repeats, up
// to kubelet's limits of 3 and 32) and its options override those of the
// same name. ok is false when the pod should simply see the node's file
// (Default without dnsConfig).
func PodResolv(pod *corev1.Pod, nameserver netip.Addr, zone string, host []byte) (content string, ok bool) {
	if zone == "" {
		zone = DefaultZone
	}
	var r resolvConf
	switch pod.Spec.DNSPolicy {
	case corev1.DNSNone:
	case "", corev1.DNSClusterFirst, corev1.DNSClusterFirstWithHostNet:
		if nameserver.IsValid() {
			r = resolvConf{
				nameservers: []string{nameserver.String()},
				searches:    []string{pod.Namespace + ".svc." + zone, "svc." + zone, zone},
				options:     []string{"ndots:5"},
			}
			break
		}
		fallthrough
	default: // corev1.DNSDefault
		if pod.Spec.DNSConfig == nil {
			return "", false
		}
		r = parseResolv(host)
	}
	if c := pod.Spec.DNSConfig; c != nil {
		for _, ns := range c.Nameservers {
			if !slices.Contains(r.nameservers, ns) {
				r.nameservers = append(r.nameservers, ns)
			}
		}
		for _, s := range c.Searches {
			if !slices.Contains(r.searches, s) {
				r.searches = append(r.searches, s)
			}
		}
		for _, o := range c.Options {
			opt := o.Name
			if o.Value != nil {
				opt += ":" + *o.Value
			}
			r.setOption(o.Name, opt)
		}
	}
	return r.String(), true
}

// resolvConf is the part of a resolv.conf a pod's file is made of.
type resolvConf struct {
	nameservers, searches, options []string
}

// parseResolv reads nameserver, search (and domain) and options lines.
func parseResolv(b []byte) resolvConf {
	var r resolvConf
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 || strings.HasPrefix(f[0], "#") || strings.HasPrefix(f[0], ";") {
			continue
		}
		switch f[0] {
		case "nameserver":
			r.nameservers = append(r.nameservers, f[1])
		case "search", "domain":
			r.searches = f[1:] // the last line wins, as in the resolver
		case "options":
			for _, o := range f[1:] {
				name, _, _ := strings.Cut(o, ":")
				r.setOption(name, o)
			}
		}
	}
	return r
}

// setOption adds opt (name or name:value), replacing an option of the
// same name.
func (r *resolvConf) setOption(name, opt string) {
	for i, o := range r.options {
		if n, _, _ := strings.Cut(o, ":"); n == name {
			r.options[i] = opt
			return
		}
	}
	r.options = append(r.options, opt)
}

func (r resolvConf) String() string {
	var b strings.Builder
	for _, ns := range r.nameservers[:min(len(r.nameservers), maxNameservers)] {
		b.WriteString("nameserver " + ns + "\n")
	}
	if len(r.searches) > 0 {
		b.WriteString("search " + strings.Join(r.searches[:min(len(r.searches), maxSearches)], " ") + "\n")
	}
	if len(r.options) > 0 {
		b.WriteString("options " + strings.Join(r.options, " ") + "\n")
	}
	return b.String()
}
