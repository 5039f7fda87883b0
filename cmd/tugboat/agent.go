package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes"

	"github.com/tugboat-dev/tugboat/kernel/agent"
	"github.com/tugboat-dev/tugboat/kernel/agent/sim"
	"github.com/tugboat-dev/tugboat/kernel/apiserver"
	"github.com/tugboat-dev/tugboat/kernel/pki"
)

// AgentConfig is the agent section of Config (squashed into it: the keys it
// declares are top-level unless their mapstructure tags nest them).
type AgentConfig struct {
	NodeName           string   `mapstructure:"node-name"`
	Runtime            string   `mapstructure:"runtime"`
	NetworkMode        string   `mapstructure:"network-mode"`
	DisableAgent       bool     `mapstructure:"disable-agent"`
	NodeLabels         []string `mapstructure:"node-labels"`
	RegisterWithTaints []string `mapstructure:"register-with-taints"`
	RuntimeConfig      `mapstructure:",squash"`
	Sim                struct {
		Nodes         int64         `mapstructure:"nodes"`
		Capacity      []string      `mapstructure:"capacity"`
		Labels        []string      `mapstructure:"labels"`
		Taints        []string      `mapstructure:"taints"`
		ExitAfter     time.Duration `mapstructure:"exit-after"`
		RenewInterval time.Duration `mapstructure:"renew-interval"`
	} `mapstructure:"sim"`
}

// runtimes are the --runtime values.
var runtimes = append(slices.Clone(workloadRuntimes), "sim")

func agentOptions() []option {
	return append([]option{
		{"node-name", "", "name of the local node (a DNS subdomain); empty means the host name, lower-cased"},
		{"runtime", "exec", "workload runtime of the local node: " + strings.Join(runtimes, " or ")},
		{"network-mode", networkHost, "pod network of the local node: host (pods share the machine's network) or bridge (a network namespace and an address from the node's pod CIDR per pod; root)"},
		{"disable-agent", false, "do not run a node agent for this machine (the server is then control plane only)"},
		{"node-labels", []string{}, "labels of the local node at registration, key=value"},
		{"register-with-taints", []string{}, "taints of the local node at registration, key=value:Effect or key:Effect"},
		{"sim.nodes", int64(0), "simulated nodes to run, named sim-0 ... sim-<N-1> (pods on them go Running without running anything)"},
		{"sim.capacity", []string{"cpu=32", "memory=256Gi", "pods=110", "ephemeral-storage=1Ti"}, "capacity (= allocatable) of each simulated node, resource=quantity"},
		{"sim.labels", []string{}, "labels of each simulated node, key=value"},
		{"sim.taints", []string{}, "taints of each simulated node at registration, key=value:Effect or key:Effect"},
		{"sim.exit-after", time.Second, "how long pods whose restartPolicy is not Always run on simulated nodes (annotation " + sim.AnnotationExitAfter + " overrides it)"},
		{"sim.renew-interval", 10 * time.Second, "how often each simulated node renews its Lease"},
	}, runtimeOptions()...)
}

// defaultNodeName is the lower-cased host name.
func defaultNodeName() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "localhost"
	}
	return strings.ToLower(h)
}

// agentComponent is the server's agent: the local node (unless
// disable-agent) and the simulated nodes (sim.nodes).
func agentComponent() component {
	return component{
		name:     "agent",
		options:  agentOptions,
		complete: completeAgent,
		start:    startAgent,
	}
}

func completeAgent(c *Config) []error {
	a := &c.Agent
	var errs []error
	if a.NodeName == "" {
		a.NodeName = defaultNodeName()
	}
	if msgs := validation.IsDNS1123Subdomain(a.NodeName); len(msgs) > 0 {
		errs = append(errs, invalid("node-name", a.NodeName, msgs[0]))
	}
	if !slices.Contains(runtimes, a.Runtime) {
		errs = append(errs, invalid("runtime", a.Runtime, "want "+strings.Join(runtimes, " or ")))
	}
	if err := checkNetworkMode(a.NetworkMode, a.Runtime); err != nil {
		errs = append(errs, invalid("network-mode", a.NetworkMode, err.Error()))
	}
	if p := a.Containerd.PullPolicy; !slices.Contains([]string{"Always", "IfNotPresent", "Never"}, p) {
		errs = append(errs, invalid("containerd.pull-policy", p, "want Always, IfNotPresent or Never"))
	}
	if _, err := parseLabels(a.NodeLabels); err != nil {
		errs = append(errs, invalid("node-labels", a.NodeLabels, err.Error()))
	}
	if _, err := parseTaints(a.RegisterWithTaints); err != nil {
		errs = append(errs, invalid("register-with-taints", a.RegisterWithTaints, err.Error()))
	}
	if a.Sim.Nodes < 0 || a.Sim.Nodes > 1<<15 {
		errs = append(errs, invalid("sim.nodes", a.Sim.Nodes, "want 0 to 32768"))
	}
	if _, err := parseResources(a.Sim.Capacity); err != nil {
		errs = append(errs, invalid("sim.capacity", a.Sim.Capacity, err.Error()))
	}
	if _, err := parseLabels(a.Sim.Labels); err != nil {
		errs = append(errs, invalid("sim.labels", a.Sim.Labels, err.Error()))
	}
	if _, err := parseTaints(a.Sim.Taints); err != nil {
		errs = append(errs, invalid("sim.taints", a.Sim.Taints, err.Error()))
	}
	if a.Sim.ExitAfter <= 0 {
		errs = append(errs, invalid("sim.exit-after", a.Sim.ExitAfter, "must be positive"))
	}
	if a.Sim.RenewInterval <= 0 {
		errs = append(errs, invalid("sim.renew-interval", a.Sim.RenewInterval, "must be positive"))
	}
	return errs
}

// simUser is the identity of the simulated nodes' client: it writes many
// nodes' objects, so it is not a single node's identity.
var simUser = apiserver.User{Name: "system:tugboat:sim", Groups: []string{"system:masters"}}

// startAgent starts the local node and the simulated ones. A shutdown
// that begins while they start is not an error.
func startAgent(ctx context.Context, env componentEnv) (func(), error) {
	if env.Certs != nil {
		if _, err := agent.LoadJoinToken(nodeTokenFile(env.Config), env.Certs.CAPEM()); err != nil {
			return nil, err
		}
		env.Logger.Info("nodes join with `tugboat agent --server " + env.ServerURL + " --token <token>`; the token is in " + nodeTokenFile(env.Config))
	}
	stop, err := startNodes(ctx, env)
	if err != nil && ctx.Err() != nil {
		return func() {}, nil
	}
	return stop, err
}

func startNodes(ctx context.Context, env componentEnv) (func(), error) {
	a := env.Config.Agent
	var sims []*sim.Cluster
	var simMu sync.Mutex
	simHandler := func(name string) http.Handler {
		simMu.Lock()
		defer simMu.Unlock()
		for _, c := range sims {
			if h := c.Handler(name); h != nil {
				return h
			}
		}
		return nil
	}
	stop := func() {
		for _, c := range sims {
			c.Stop()
		}
	}
	startSim := func(cfg sim.Config) error {
		rc := env.Client(simUser)
		rc.ContentType = "application/vnd.kubernetes.protobuf"
		cs, err := kubernetes.NewForConfig(rc)
		if err != nil {
			return err
		}
		cfg.ExitAfter = a.Sim.ExitAfter
		cfg.RenewInterval = a.Sim.RenewInterval
		cfg.Logger = env.Logger.With("component", "sim")
		c, err := sim.Start(ctx, cs, cfg)
		if err != nil {
			return err
		}
		simMu.Lock()
		sims = append(sims, c)
		simMu.Unlock()
		return nil
	}
	var local http.Handler
	var nn *nodeNetwork
	if !a.DisableAgent {
		var err error
		if nn, err = startLocalNodeNetwork(ctx, env); err != nil {
			return nil, err
		}
		stopSims := stop
		stop = func() {
			stopSims()
			nn.Stop()
		}
	}
	if !a.DisableAgent && a.Runtime != "sim" {
		stopLocal, err := startLocalAgent(ctx, env, &local, nn)
		if err != nil {
			stop()
			return nil, err
		}
		prev := stop
		stop = func() {
			stopLocal()
			prev()
		}
	}
	if err := connectNodes(env, a.NodeName, local, simHandler); err != nil {
		stop()
		return nil, err
	}
	if !a.DisableAgent && a.Runtime == "sim" {
		labels, _ := parseLabels(a.NodeLabels)
		taints, _ := parseTaints(a.RegisterWithTaints)
		if err := startSim(sim.Config{Names: []string{a.NodeName}, Labels: labels, Taints: taints}); err != nil {
			stop()
			return nil, err
		}
	}
	if a.Sim.Nodes > 0 {
		capacity, _ := parseResources(a.Sim.Capacity)
		labels, _ := parseLabels(a.Sim.Labels)
		taints, _ := parseTaints(a.Sim.Taints)
		if err := startSim(sim.Config{Nodes: int(a.Sim.Nodes), Capacity: capacity, Labels: labels, Taints: taints}); err != nil {
			stop()
			return nil, err
		}
	}
	return stop, nil
}

// parseLabels parses key=value pairs.
func parseLabels(list []string) (map[string]string, error) {
	out := make(map[string]string, len(list))
	for _, kv := range list {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return nil, fmt.Errorf("%q is not key=value", kv)
		}
		if msgs := validation.IsQualifiedName(k); len(msgs) > 0 {
			return nil, fmt.Errorf("label key %q: %s", k, msgs[0])
		}
		if msgs := validation.IsValidLabelValue(v); len(msgs) > 0 {
			return nil, fmt.Errorf("label value %q: %s", v, msgs[0])
		}
		out[k] = v
	}
	return out, nil
}

// parseTaints parses key=value:Effect or key:Effect, like kubelet's
// --register-with-taints.
func parseTaints(list []string) ([]corev1.Taint, error) {
	var out []corev1.Taint
	for _, s := range list {
		kv, effect, ok := strings.Cut(s, ":")
		if !ok {
			return nil, fmt.Errorf("taint %q has no :Effect", s)
		}
		t := corev1.Taint{Effect: corev1.TaintEffect(effect)}
		t.Key, t.Value, _ = strings.Cut(kv, "=")
		switch t.Effect {
		case corev1.TaintEffectNoSchedule, corev1.TaintEffectPreferNoSchedule, corev1.TaintEffectNoExecute:
		default:
			return nil, fmt.Errorf("taint %q: effect %q is not NoSchedule, PreferNoSchedule or NoExecute", s, effect)
		}
		if msgs := validation.IsQualifiedName(t.Key); len(msgs) > 0 {
			return nil, fmt.Errorf("taint key %q: %s", t.Key, msgs[0])
		}
		if msgs := validation.IsValidLabelValue(t.Value); len(msgs) > 0 {
			return nil, fmt.Errorf("taint value %q: %s", t.Value, msgs[0])
		}
		out = append(out, t)
	}
	return out, nil
}

// parseResources parses resource=quantity pairs.
func parseResources(list []string) (corev1.ResourceList, error) {
	out := make(corev1.ResourceList, len(list))
	for _, kv := range list {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return nil, fmt.Errorf("%q is not resource=quantity", kv)
		}
		if msgs := validation.IsQualifiedName(k); len(msgs) > 0 {
			return nil, fmt.Errorf("resource %q: %s", k, msgs[0])
		}
		q, err := resource.ParseQuantity(v)
		if err != nil {
			return nil, fmt.Errorf("resource %s: quantity %q: %v", k, v, err)
		}
		out[corev1.ResourceName(k)] = q
	}
	return out, nil
}

// nodeUser is the identity of node name's agent, as node authorization
// expects it.
func nodeUser(name string) apiserver.User {
	return apiserver.User{Name: "system:node:" + name, Groups: []string{"system:nodes", "system:authenticated"}}
}

// startLocalAgent runs this machine's node on its workload runtime (exec,
// containerd or wasm), in process, with its state under <data-dir>/agent;
// nn is the node's Service proxy and DNS server.
func startLocalAgent(ctx context.Context, env componentEnv, local *http.Handler, nn *nodeNetwork) (func(), error) {
	a := env.Config.Agent
	dir := filepath.Join(env.Config.DataDir, "agent")
	logger := env.Logger.With("component", "agent")
	rt, err := newWorkloadRuntime(ctx, a.Runtime, dir, filepath.Join(env.Config.DataDir, "wasm-workload-cache"), a.RuntimeConfig, logger)
	if err != nil {
		return nil, fmt.Errorf("%s runtime: %w", a.Runtime, err)
	}
	rc := env.Client(nodeUser(a.NodeName))
	rc.ContentType = "application/vnd.kubernetes.protobuf"
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		rt.Close()
		return nil, err
	}
	labels, _ := parseLabels(a.NodeLabels)
	taints, _ := parseTaints(a.RegisterWithTaints)
	podNet, stopDNS := podNetwork(a.NetworkMode, cs, env.Config.Network.DNS.Forward, logger)
	var addrs []corev1.NodeAddress // default: the machine's first non-loopback IPv4 address
	if ip := env.Config.Network.advertise; ip.IsValid() {
		addrs = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: ip.String()}, {Type: corev1.NodeHostName, Address: a.NodeName}}
	}
	ag, err := agent.Start(ctx, cs, agent.Config{
		NodeName: a.NodeName, Runtime: rt, Dir: dir, Labels: labels, Taints: taints, Logger: logger,
		Network: podNet, Addresses: addrs, ServiceAddr: nn.userspaceAddr(),
		Services: nn.servicesFunc(),
	})
	if err != nil {
		stopDNS()
		rt.Close()
		return nil, err
	}
	*local = ag.Handler()
	return func() {
		ag.Stop()
		stopDNS()
		rt.Close()
	}, nil
}

// connectNodes lets the API server reach node agents for logs, exec and
// stats: the local agent's handler in process (when local is set), the
// others over TLS.
func connectNodes(env componentEnv, localName string, local http.Handler, sim func(string) http.Handler) error {
	if env.APIServer == nil || env.Certs == nil {
		return nil
	}
	remote, err := remoteConnector(env.Certs)
	if err != nil {
		return err
	}
	env.APIServer.SetNodeConnector(func(ctx context.Context, node *corev1.Node) (http.Handler, error) {
		if h := sim(node.Name); h != nil {
			return h, nil
		}
		if local != nil && node.Name == localName {
			return local, nil
		}
		return remote(ctx, node)
	})
	return nil
}

// remoteConnector reaches remote agents' kubelet API over TLS with a
// client certificate for agent.APIServerClientName. Agents' serving
// certificates are self-signed and not verified (as kube-apiserver does
// not verify kubelets' by default).
func remoteConnector(certs *pki.PKI) (apiserver.NodeConnector, error) {
	certPEM, keyPEM, err := certs.IssueClientCert(agent.APIServerClientName, nil)
	if err != nil {
		return nil, err
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, err
	}
	transport := &http.Transport{
		TLSClientConfig:     &tls.Config{Certificates: []tls.Certificate{pair}, InsecureSkipVerify: true}, //nolint:gosec // see above
		TLSHandshakeTimeout: 10 * time.Second,
		IdleConnTimeout:     90 * time.Second,
	}
	return func(_ context.Context, node *corev1.Node) (http.Handler, error) {
		base, err := agent.NodeURL(node)
		if err != nil {
			return nil, err
		}
		target, err := url.Parse(base)
		if err != nil {
			return nil, err
		}
		return &httputil.ReverseProxy{
			Rewrite:       func(pr *httputil.ProxyRequest) { pr.SetURL(target) },
			Transport:     transport,
			FlushInterval: -1,
		}, nil
	}, nil
}

// nodeTokenFile is where the server keeps the join token.
func nodeTokenFile(cfg Config) string { return filepath.Join(cfg.DataDir, "node-token") }

// JoinHandler returns the unauthenticated handler of agent.JoinCAPath and
// agent.JoinPath (`tugboat agent --token` joins through them), creating
// the join token at <data-dir>/node-token if needed. server.go mounts it
// in front of authentication.
func JoinHandler(cfg Config, certs *pki.PKI) (http.Handler, error) {
	tok, err := agent.LoadJoinToken(nodeTokenFile(cfg), certs.CAPEM())
	if err != nil {
		return nil, err
	}
	return &agent.JoinServer{Token: tok, CA: certs.CAPEM(), Issue: certs.IssueClientCert}, nil
}
