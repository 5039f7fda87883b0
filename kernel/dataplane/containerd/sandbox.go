package containerd

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"syscall"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/containerd/v2/pkg/oci"
	cerrdefs "github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/tugboat-dev/tugboat/kernel/dataplane"
)

// sandboxPrefix starts the containerd ID of a pod sandbox.
const sandboxPrefix = "tugboat-sandbox-"

// labelNetNS on a sandbox container records the network namespace it
// joined (ContainerSpec.NetNS), so a restarted runtime knows it.
const labelNetNS = "tugboat.dev/netns"

// pauseScript is the sandbox's process: it holds the pod's namespaces,
// reaps orphans (ash waits for any child) and exits on SIGTERM. $1 is
// "net" when the sandbox has a network namespace of its own.
const pauseScript = `trap 'exit 0' TERM INT
if [ "$1" = net ]; then /bin/busybox ip link set lo up; fi
while :; do /bin/busybox sleep 86400 & wait $!; done`

// sandbox is a pod's pause container.
type sandbox struct {
	key  string
	id   string // containerd ID
	task client.Task
	pid  int
	// netns is the network namespace the sandbox joined (the pod
	// network's, ContainerSpec.NetNS); "" when it has its own or the
	// host's.
	netns string
}

// sandboxKey is the pod a container belongs to: its pod UID label, else
// the container alone.
func sandboxKey(spec dataplane.ContainerSpec) string {
	if uid := spec.Labels[labelPodUID]; uid != "" {
		return uid
	}
	return spec.ID
}

// joinOpts makes a container join the sandbox's namespaces: the network
// namespace too with podNetwork or when the sandbox joined a pod network
// namespace.
func (sb *sandbox) joinOpts(podNetwork bool) []oci.SpecOpts {
	ns := func(t specs.LinuxNamespaceType, name string) oci.SpecOpts {
		return oci.WithLinuxNamespace(specs.LinuxNamespace{Type: t, Path: filepath.Join("/proc", strconv.Itoa(sb.pid), "ns", name)})
	}
	opts := []oci.SpecOpts{ns(specs.PIDNamespace, "pid"), ns(specs.IPCNamespace, "ipc")}
	if podNetwork || sb.netns != "" {
		return append(opts, ns(specs.NetworkNamespace, "net"), ns(specs.UTSNamespace, "uts"))
	}
	return append(opts, oci.WithHostNamespace(specs.NetworkNamespace), oci.WithHostNamespace(specs.UTSNamespace),
		oci.WithHostHostsFile, oci.WithHostResolvconf)
}

// ensureSandbox returns the pod's running sandbox, starting one if there
// is none (or it died).
func (r *Runtime) ensureSandbox(ctx context.Context, key, podName string) (*sandbox, error) {
	return r.ensureSandboxIn(ctx, key, podName, "")
}

// ensureSandboxIn is ensureSandbox for a sandbox that joins the network
// namespace at netns (the pod network's; "" as ensureSandbox), so every
// container of the pod shares it.
func (r *Runtime) ensureSandboxIn(ctx context.Context, key, podName, netns string) (*sandbox, error) {
	r.sbMu.Lock()
	defer r.sbMu.Unlock()
	r.mu.Lock()
	sb := r.sandboxes[key]
	r.mu.Unlock()
	if sb != nil {
		if st, err := sb.task.Status(ctx); err == nil && st.Status == client.Running {
			return sb, nil
		}
		r.deleteSandbox(ctx, sb.id)
	}
	rootfs, err := r.pauseRootfs()
	if err != nil {
		return nil, err
	}
	id := containerdID(sandboxPrefix + key)
	r.deleteSandbox(ctx, id) // a leftover of an earlier runtime
	args := []string{"/bin/busybox", "sh", "-c", pauseScript, "pause"}
	opts := []oci.SpecOpts{oci.WithRootFSPath(rootfs), oci.WithRootFSReadonly()}
	labels := map[string]string{labelManaged: "sandbox", labelSandbox: key}
	switch {
	case netns != "":
		// The pod network's namespace, set up (lo included) by the agent.
		labels[labelNetNS] = netns
		opts = append(opts, oci.WithLinuxNamespace(specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: netns}))
		if podName != "" {
			opts = append(opts, oci.WithHostname(podName))
		}
	case r.opts.PodNetwork:
		args = append(args, "net")
		opts = append(opts, oci.WithAddedCapabilities([]string{"CAP_NET_ADMIN"}))
		if podName != "" {
			opts = append(opts, oci.WithHostname(podName))
		}
	default:
		opts = append(opts, oci.WithHostNamespace(specs.NetworkNamespace), oci.WithHostNamespace(specs.UTSNamespace))
	}
	opts = append(opts, oci.WithProcessArgs(args...))
	ctr, err := r.client.NewContainer(ctx, id,
		client.WithContainerLabels(labels),
		client.WithNewSpec(opts...))
	if err != nil {
		return nil, fmt.Errorf("pod sandbox: %w", err)
	}
	task, err := ctr.NewTask(ctx, cio.NullIO)
	if err == nil {
		if err = task.Start(ctx); err != nil {
			task.Delete(ctx, client.WithProcessKill)
		}
	}
	if err != nil {
		ctr.Delete(ctx)
		return nil, fmt.Errorf("pod sandbox: %s", runcMessage(err))
	}
	sb = &sandbox{key: key, id: id, task: task, pid: int(task.Pid()), netns: netns}
	r.mu.Lock()
	r.sandboxes[key] = sb
	r.mu.Unlock()
	return sb, nil
}

// removeSandbox stops and deletes the pod's sandbox.
func (r *Runtime) removeSandbox(ctx context.Context, key string) {
	r.sbMu.Lock()
	defer r.sbMu.Unlock()
	r.mu.Lock()
	sb := r.sandboxes[key]
	delete(r.sandboxes, key)
	r.mu.Unlock()
	if sb != nil {
		r.deleteSandbox(ctx, sb.id)
	}
}

// deleteSandbox kills and deletes a sandbox container by ID.
func (r *Runtime) deleteSandbox(ctx context.Context, id string) {
	ctr, err := r.client.LoadContainer(ctx, id)
	if err != nil {
		return
	}
	if task, err := ctr.Task(ctx, nil); err == nil {
		task.Kill(ctx, syscall.SIGKILL)
		task.Delete(ctx, client.WithProcessKill)
	}
	if err := ctr.Delete(ctx); err != nil && !cerrdefs.IsNotFound(err) {
		r.log.Warn("containerd runtime: delete sandbox", "sandbox", id, "err", err)
	}
}

// loadSandboxes finds the running sandboxes of the namespace.
func (r *Runtime) loadSandboxes(ctx context.Context) error {
	ctrs, err := r.client.Containers(ctx, fmt.Sprintf(`labels.%q==sandbox`, labelManaged))
	if err != nil {
		return fmt.Errorf("containerd runtime: list sandboxes: %w", err)
	}
	for _, ctr := range ctrs {
		labels, err := ctr.Labels(ctx)
		if err != nil {
			continue
		}
		task, err := ctr.Task(ctx, nil)
		if err != nil {
			continue // dead: replaced on the next start
		}
		if st, err := task.Status(ctx); err != nil || st.Status != client.Running {
			continue
		}
		key := labels[labelSandbox]
		r.sandboxes[key] = &sandbox{key: key, id: ctr.ID(), task: task, pid: int(task.Pid()), netns: labels[labelNetNS]}
	}
	return nil
}

// pauseRootfs prepares the sandbox's read-only root: the pause binary as
// /bin/busybox and the mount points runc needs.
func (r *Runtime) pauseRootfs() (string, error) {
	root := filepath.Join(r.opts.Dir, ".pause", "rootfs")
	bin := filepath.Join(root, "bin", "busybox")
	for _, d := range []string{"bin", "proc", "dev", "sys", "tmp", "etc"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			return "", fmt.Errorf("pod sandbox: %w", err)
		}
	}
	src, err := os.Stat(r.opts.PauseBinary)
	if err != nil {
		return "", fmt.Errorf("pod sandbox: pause binary (Debian's busybox-static): %w", err)
	}
	if dst, err := os.Stat(bin); err == nil && dst.Size() == src.Size() && !dst.ModTime().Before(src.ModTime()) {
		return root, nil
	}
	if err := copyFile(r.opts.PauseBinary, bin+".tmp"); err != nil {
		return "", fmt.Errorf("pod sandbox: %w", err)
	}
	if err := os.Rename(bin+".tmp", bin); err != nil {
		return "", fmt.Errorf("pod sandbox: %w", err)
	}
	return root, nil
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
