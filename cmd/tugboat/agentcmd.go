package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/tugboat-dev/tugboat/kernel/agent"
	ctrd "github.com/tugboat-dev/tugboat/kernel/dataplane/containerd"
	"github.com/tugboat-dev/tugboat/kernel/network"
	"github.com/tugboat-dev/tugboat/kernel/pki"
	"github.com/tugboat-dev/tugboat/kernel/procmaps"
)

// agentFlags are `tugboat agent`'s settings.
type agentFlags struct {
	server, token, nodeName, dataDir, runtime, logLevel, logFormat string
	rt                                                             RuntimeConfig
	kubeletPort                                                    int
	labels, taints                                                 []string
	// Node network: see the flags.
	networkMode, proxyMode, nodePortAddress, dnsListen, advertise, clusterCIDR string
	dnsForward                                                                 []string
}

func newAgentCommand() *cobra.Command {
	var f agentFlags
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Join this machine to a Tugboat server as a node",
		Long: `Join this machine to a Tugboat server as a node and run the pods bound to it.

The first start exchanges the join token (the server keeps it in
<server data-dir>/node-token) for a client certificate of the node's identity
(system:node:<name>); later starts reuse <data-dir>/node.kubeconfig and need
no token. The agent serves logs and exec to the API server on --kubelet-port.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			return runAgent(ctx, f, cmd.ErrOrStderr())
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&f.server, "server", os.Getenv("TUGBOAT_SERVER"), "URL of the Tugboat server (https://host:6443) (env TUGBOAT_SERVER)")
	fs.StringVar(&f.token, "token", os.Getenv("TUGBOAT_TOKEN"), "join token from the server's <data-dir>/node-token (env TUGBOAT_TOKEN)")
	fs.StringVar(&f.nodeName, "node-name", "", "name of this node (a DNS subdomain); default: the host name, lower-cased")
	fs.StringVar(&f.dataDir, "data-dir", defaultAgentDataDir(), "directory for the node's credentials, containers and volumes")
	fs.StringVar(&f.runtime, "runtime", "exec", "workload runtime: "+strings.Join(workloadRuntimes, ", "))
	fs.StringVar(&f.rt.Containerd.Address, "containerd-address", ctrd.DefaultAddress, "containerd socket of the containerd runtime")
	fs.StringVar(&f.rt.Containerd.Namespace, "containerd-namespace", ctrd.DefaultNamespace, "containerd namespace of the containerd runtime")
	fs.StringVar(&f.rt.Containerd.PullPolicy, "containerd-pull-policy", string(ctrd.PullIfNotPresent), "image pull policy of the containerd runtime: Always, IfNotPresent or Never")
	fs.StringVar(&f.rt.Containerd.PauseBinary, "containerd-pause-binary", ctrd.DefaultPauseBinary, "static busybox run as each containerd pod's sandbox process")
	fs.StringVar(&f.rt.Wasm.ModuleDir, "wasm-module-dir", "", "directory that relative .wasm image paths of the wasm runtime resolve against")
	fs.IntVar(&f.kubeletPort, "kubelet-port", 10250, "port to serve logs and exec to the API server on; 0 picks a free port")
	fs.StringSliceVar(&f.labels, "node-labels", nil, "labels of the node at registration, key=value")
	fs.StringSliceVar(&f.taints, "register-with-taints", nil, "taints of the node at registration, key=value:Effect or key:Effect")
	fs.StringVar(&f.networkMode, "network-mode", networkHost, "pod network: host (pods share the machine's network) or bridge (a network namespace and an address from the node's pod CIDR per pod, host-gw routes; root)")
	fs.StringVar(&f.advertise, "advertise-address", "", "the node's InternalIP (other nodes route pod traffic to it in bridge mode); default: the first non-loopback IPv4 address")
	fs.StringVar(&f.proxyMode, "proxy-mode", proxyUserspace, "Service proxy of this node: userspace, iptables (root; programs this machine's network namespace) or none")
	fs.StringVar(&f.nodePortAddress, "proxy-nodeport-address", "", "address the userspace proxy serves node ports on; empty means every address, none serves none")
	fs.StringVar(&f.clusterCIDR, "cluster-cidr", network.DefaultClusterCIDR.String(), "the cluster's pod range (the server's cluster-cidr); the iptables proxy masquerades Service traffic from outside it")
	fs.StringVar(&f.dnsListen, "dns-listen", "", "UDP and TCP address of an extra cluster DNS server of this node (port 0 picks one); empty (the default) runs none; in bridge mode the pods' server listens on the bridge's address, port 53, regardless")
	fs.StringSliceVar(&f.dnsForward, "dns-forward", nil, "upstream DNS servers (ip:port) for names outside cluster.local; none means those are refused")
	fs.StringVar(&f.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	fs.StringVar(&f.logFormat, "log-format", "text", "log format: text or json")
	return cmd
}

// defaultAgentDataDir is the server's default data dir with "-agent".
func defaultAgentDataDir() string { return defaultDataDir() + "-agent" }

// runAgent joins (if needed) and runs the node until ctx ends.
func runAgent(ctx context.Context, f agentFlags, stderr io.Writer) error {
	if os.Getenv("GOGC") == "" {
		// A node agent idles with a small live heap: collect at 50%
		// growth rather than 100% to keep its footprint small.
		debug.SetGCPercent(50)
	}
	var cfg Config
	cfg.Log.Level, cfg.Log.Format = f.logLevel, f.logFormat
	base := newLogger(cfg, stderr)
	setClientGoLog(base)
	logger := base.With("component", "agent")
	if f.nodeName == "" {
		f.nodeName = defaultNodeName()
	}
	if msgs := validation.IsDNS1123Subdomain(f.nodeName); len(msgs) > 0 {
		return invalid("node-name", f.nodeName, msgs[0])
	}
	if !slices.Contains(workloadRuntimes, f.runtime) {
		return invalid("runtime", f.runtime, "want "+strings.Join(workloadRuntimes, ", "))
	}
	// Zero values (callers that build agentFlags themselves): host
	// network, no proxy, no DNS.
	if f.networkMode == "" {
		f.networkMode = networkHost
	}
	if err := checkNetworkMode(f.networkMode, f.runtime); err != nil {
		return invalid("network-mode", f.networkMode, err.Error())
	}
	if f.proxyMode != "" && !slices.Contains(proxyModes, f.proxyMode) {
		return invalid("proxy-mode", f.proxyMode, "want "+strings.Join(proxyModes, ", "))
	}
	var cidr netip.Prefix
	if f.clusterCIDR != "" {
		var err error
		if cidr, err = netip.ParsePrefix(f.clusterCIDR); err != nil {
			return invalid("cluster-cidr", f.clusterCIDR, err.Error())
		}
	}
	var addrs []corev1.NodeAddress
	if f.advertise != "" {
		ip, err := netip.ParseAddr(f.advertise)
		if err != nil || ip.IsUnspecified() {
			return invalid("advertise-address", f.advertise, "want a specific IP address")
		}
		addrs = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: ip.String()}, {Type: corev1.NodeHostName, Address: f.nodeName}}
	}
	nodePorts := netip.IPv4Unspecified()
	switch f.nodePortAddress {
	case "":
	case "none":
		nodePorts = netip.Addr{}
	default:
		var err error
		if nodePorts, err = netip.ParseAddr(f.nodePortAddress); err != nil {
			return invalid("proxy-nodeport-address", f.nodePortAddress, "want an IP address, empty or none")
		}
	}
	labels, err := parseLabels(f.labels)
	if err != nil {
		return invalid("node-labels", f.labels, err.Error())
	}
	taints, err := parseTaints(f.taints)
	if err != nil {
		return invalid("register-with-taints", f.taints, err.Error())
	}
	dir, err := filepath.Abs(f.dataDir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	kubeconfig := filepath.Join(dir, "node.kubeconfig")
	if _, err := os.Stat(kubeconfig); errors.Is(err, os.ErrNotExist) {
		if f.server == "" || f.token == "" {
			return errors.New("--server and --token are needed to join (no credentials in " + kubeconfig + " yet)")
		}
		creds, err := agent.Join(ctx, f.server, f.token, f.nodeName)
		if err != nil {
			return err
		}
		if err := pki.WriteKubeconfig(kubeconfig, f.server, creds.CA, creds.Cert, creds.Key); err != nil {
			return err
		}
		logger.Info("joined", "server", f.server, "node", f.nodeName, "kubeconfig", kubeconfig)
	}
	rc, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return fmt.Errorf("node kubeconfig: %w", err)
	}
	rc.ContentType = "application/vnd.kubernetes.protobuf"
	rc.QPS, rc.Burst = 50, 100 // kubelet's kubeAPIQPS and kubeAPIBurst
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return err
	}
	evcs, err := kubernetes.NewForConfig(rc) // its own rate limiter, as kubelet's event client
	if err != nil {
		return err
	}
	ca := rc.TLSClientConfig.CAData
	ln, err := net.Listen("tcp", net.JoinHostPort("", strconv.Itoa(f.kubeletPort)))
	if err != nil {
		return fmt.Errorf("kubelet port: %w", err)
	}
	defer ln.Close()
	rt, err := newWorkloadRuntime(ctx, f.runtime, dir, filepath.Join(dir, "wasm-cache"), f.rt, logger)
	if err != nil {
		return fmt.Errorf("%s runtime: %w", f.runtime, err)
	}
	defer rt.Close()
	nn, err := startNodeNetwork(ctx, nodeNetworkConfig{
		Client: cs, ProxyMode: f.proxyMode, NodePortAddress: nodePorts, ClusterCIDR: cidr,
		DNSListen: f.dnsListen, DNSForward: f.dnsForward, Logger: logger,
	})
	if err != nil {
		return err
	}
	defer nn.Stop()
	podNet, stopDNS := podNetwork(f.networkMode, cs, f.dnsForward, logger)
	defer stopDNS()
	ag, err := agent.Start(ctx, cs, agent.Config{
		NodeName: f.nodeName, Runtime: rt, Dir: dir, Labels: labels, Taints: taints, Logger: logger,
		KubeletPort: int32(ln.Addr().(*net.TCPAddr).Port), EventClient: evcs, Addresses: addrs, Network: podNet,
		ServiceAddr: nn.userspaceAddr(), Services: nn.servicesFunc(),
	})
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	defer ag.Stop()
	go func() {
		// Once started, and again once the first pods have settled.
		for _, d := range []time.Duration{0, 20 * time.Second} {
			select {
			case <-ctx.Done():
				return
			case <-time.After(d):
				trimBinaryPages()
			}
		}
	}()
	logger.Info("serving the kubelet API", "addr", ln.Addr().String())
	return ag.ServeTLS(ctx, ln, ca)
}

// trimBinaryPages asks the kernel to drop the resident pages of this
// process's own executable (text and read-only data). The one binary
// carries the whole server; starting an agent touches much of it once
// (package initialization) and little of it afterwards. Pages still in
// use fault back in from the page cache; this only keeps the agent's
// resident set to what it uses.
func trimBinaryPages() {
	exe, err := os.Executable()
	if err != nil {
		return
	}
	if p, err := filepath.EvalSymlinks(exe); err == nil {
		exe = p
	}
	maps, err := procmaps.Self()
	if err != nil {
		return
	}
	for _, m := range maps {
		if m.Path == exe && !strings.Contains(m.Perms, "w") {
			_ = m.Advise(unix.MADV_PAGEOUT)
		}
	}
}
