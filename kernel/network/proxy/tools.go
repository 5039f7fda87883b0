package proxy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"

	"github.com/coreos/go-iptables/iptables"

	"github.com/tugboat-dev/tugboat/kernel/errdefs"
	"github.com/tugboat-dev/tugboat/kernel/network/bridge"
)

// tools are the binaries of one iptables backend.
type tools struct {
	backend                          string
	iptablesBin, saveBin, restoreBin string
}

// pickTools finds the binaries of backend ("legacy", "nft", or "" to
// choose by the rules already in the namespace). Missing binaries are
// errdefs.ErrUnavailable, an unknown backend errdefs.ErrInvalid.
func pickTools(netns, backend string) (tools, error) {
	switch backend {
	case "legacy", "nft":
		return findTools(backend)
	case "":
	default:
		return tools{}, fmt.Errorf("iptables backend %q: want legacy, nft or empty: %w", backend, errdefs.ErrInvalid)
	}
	legacy, lerr := findTools("legacy")
	nft, nerr := findTools("nft")
	switch {
	case lerr != nil && nerr != nil:
		return tools{}, lerr
	case nerr != nil:
		return legacy, nil
	case lerr != nil:
		return nft, nil
	}
	// As Kubernetes' iptables-wrapper: the backend holding more rules
	// (legacy at 10 or more legacy rules), so a host's rules are never
	// split. On a tie (a fresh node) the wrapper takes legacy; Tugboat
	// takes the system's own iptables (nft on current distributions),
	// whose incremental syncs are 3x faster (RATIONALE.md).
	nl, err := legacy.ruleCount(netns)
	if err != nil {
		return nft, nil
	}
	if nl >= 10 {
		return legacy, nil
	}
	nn, err := nft.ruleCount(netns)
	switch {
	case err != nil || nl > nn:
		return legacy, nil
	case nn > nl:
		return nft, nil
	}
	if plain, err := exec.LookPath("iptables"); err == nil && isBackend(plain, "nft") {
		return nft, nil
	}
	return legacy, nil
}

func findTools(backend string) (tools, error) {
	t := tools{backend: backend}
	for _, x := range []struct {
		dst  *string
		name string
	}{{&t.iptablesBin, "iptables"}, {&t.saveBin, "iptables-save"}, {&t.restoreBin, "iptables-restore"}} {
		path, err := exec.LookPath(strings.Replace(x.name, "iptables", "iptables-"+backend, 1))
		if err != nil {
			// Plain names, if they are this backend.
			plain, perr := exec.LookPath(x.name)
			if perr != nil || !isBackend(plain, backend) {
				return t, fmt.Errorf("iptables %s backend: %s not found: %w", backend, x.name, errdefs.ErrUnavailable)
			}
			path = plain
		}
		*x.dst = path
	}
	return t, nil
}

// isBackend reports whether the iptables binary at path says it is of
// backend ("iptables v1.8.9 (nf_tables)" / "(legacy)").
func isBackend(path, backend string) bool {
	out, err := exec.Command(strings.Replace(path, "-restore", "", 1), "--version").Output()
	if err != nil {
		return false
	}
	v := string(out)
	if backend == "nft" {
		return strings.Contains(v, "nf_tables")
	}
	return strings.Contains(v, "legacy") || !strings.Contains(v, "nf_tables")
}

// saveOutput runs iptables-save (for table, if not "") in netns.
func (t tools) saveOutput(netns, table string) ([]byte, error) {
	var out []byte
	err := bridge.InNetNS(netns, func() error {
		args := []string{}
		if table != "" {
			args = append(args, "-t", table)
		}
		var stderr bytes.Buffer
		cmd := exec.Command(t.saveBin, args...)
		cmd.Stderr = &stderr
		var err error
		if out, err = cmd.Output(); err != nil {
			return fmt.Errorf("%s: %w: %s", t.saveBin, err, strings.TrimSpace(stderr.String()))
		}
		return nil
	})
	return out, err
}

func (t tools) ruleCount(netns string) (int, error) {
	out, err := t.saveOutput(netns, "")
	if err != nil {
		return 0, err
	}
	return bytes.Count(out, []byte("\n-")), nil
}

// chains lists the chains of the nat and filter tables.
func (t tools) chains(netns string) (map[string][]string, error) {
	res := map[string][]string{}
	for _, table := range []string{"nat", "filter"} {
		out, err := t.saveOutput(netns, table)
		if err != nil {
			return nil, fmt.Errorf("list chains: %w", err)
		}
		sc := bufio.NewScanner(bytes.NewReader(out))
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			if l := sc.Text(); strings.HasPrefix(l, ":") {
				name, _, _ := strings.Cut(l[1:], " ")
				res[table] = append(res[table], name)
			}
		}
	}
	return res, nil
}

// restore runs iptables-restore with input in netns: with --noflush
// (only the chains named are replaced) or without (the tables named are).
func (t tools) restore(ctx context.Context, netns, input string, noflush bool) error {
	return bridge.InNetNS(netns, func() error {
		args := []string{"-w"}
		if noflush {
			args = append(args, "--noflush")
		}
		cmd := exec.CommandContext(ctx, t.restoreBin, args...)
		cmd.Stdin = strings.NewReader(input)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("iptables-restore: %w: %s", err, strings.TrimSpace(stderr.String()))
		}
		return nil
	})
}

// cleanup removes the hooks and every KUBE- chain of the nat and filter
// tables, the chains in one iptables-restore.
func (t tools) cleanup(netns string) error {
	var errs []error
	err := bridge.InNetNS(netns, func() error {
		ipt, err := iptables.New(iptables.Path(t.iptablesBin))
		if err != nil {
			return fmt.Errorf("iptables: %w", err)
		}
		for _, h := range hooks {
			if err := ipt.DeleteIfExists(h.table, h.chain, h.rule...); err != nil && !notExist(err) {
				errs = append(errs, fmt.Errorf("unhook %s %s: %w", h.table, h.chain, err))
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	all, err := t.chains(netns)
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	var b strings.Builder
	for _, table := range []string{"nat", "filter"} {
		var ours []string
		for _, c := range all[table] {
			if strings.HasPrefix(c, "KUBE-") {
				ours = append(ours, c)
			}
		}
		if len(ours) == 0 {
			continue
		}
		b.WriteString("*" + table + "\n")
		for _, c := range ours {
			b.WriteString(":" + c + " - [0:0]\n")
		}
		for _, c := range ours {
			b.WriteString("-X " + c + "\n")
		}
		b.WriteString("COMMIT\n")
	}
	if b.Len() > 0 {
		if err := t.restore(context.Background(), netns, b.String(), true); err != nil {
			errs = append(errs, fmt.Errorf("delete chains: %w", err))
		}
	}
	return errors.Join(errs...)
}

func notExist(err error) bool {
	var e *iptables.Error
	return errors.As(err, &e) && e.IsNotExist()
}
