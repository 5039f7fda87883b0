package agent

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tugboat-dev/tugboat/kernel/dataplane"
)

// prepareVolumes materializes the pod's volumes under its directory:
// emptyDir (a tmpfs for medium Memory when root), configMap and secret
// files, hostPath as is. Other volume types get an empty directory.
func (w *podWorker) prepareVolumes(ctx context.Context, pod *corev1.Pod) error {
	base := filepath.Join(w.a.podDir(w.uid), "volumes")
	vols := make(map[string]string, len(pod.Spec.Volumes))
	for _, v := range pod.Spec.Volumes {
		dir := filepath.Join(base, v.Name)
		switch {
		case v.HostPath != nil:
			p := v.HostPath.Path
			if t := v.HostPath.Type; t != nil {
				switch *t {
				case corev1.HostPathDirectoryOrCreate:
					if err := os.MkdirAll(p, 0o755); err != nil {
						return fmt.Errorf("volume %s: %w", v.Name, err)
					}
				case corev1.HostPathFileOrCreate:
					f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY, 0o644)
					if err != nil {
						return fmt.Errorf("volume %s: %w", v.Name, err)
					}
					f.Close()
				case corev1.HostPathDirectory, corev1.HostPathFile, corev1.HostPathSocket:
					if _, err := os.Stat(p); err != nil {
						return fmt.Errorf("volume %s: hostPath %s: %w", v.Name, p, err)
					}
				}
			}
			vols[v.Name] = p
			continue
		case v.EmptyDir != nil:
			if err := os.MkdirAll(dir, 0o777); err != nil {
				return fmt.Errorf("volume %s: %w", v.Name, err)
			}
			if v.EmptyDir.Medium == corev1.StorageMediumMemory && os.Geteuid() == 0 && !mounted(dir) {
				opts := ""
				if v.EmptyDir.SizeLimit != nil {
					opts = fmt.Sprintf("size=%d", v.EmptyDir.SizeLimit.Value())
				}
				if err := unix.Mount("tmpfs", dir, "tmpfs", 0, opts); err != nil {
					return fmt.Errorf("volume %s: tmpfs: %w", v.Name, err)
				}
			}
		case v.ConfigMap != nil:
			cm, err := w.a.client.CoreV1().ConfigMaps(pod.Namespace).Get(ctx, v.ConfigMap.Name, metav1.GetOptions{})
			if err != nil && !(apierrors.IsNotFound(err) && optional(v.ConfigMap.Optional)) {
				return fmt.Errorf("volume %s: configmap %q: %w", v.Name, v.ConfigMap.Name, err)
			}
			data := map[string][]byte{}
			if cm != nil {
				for k, val := range cm.Data {
					data[k] = []byte(val)
				}
				for k, val := range cm.BinaryData {
					data[k] = val
				}
			}
			if err := writeFiles(dir, data, v.ConfigMap.Items, v.ConfigMap.DefaultMode); err != nil {
				return fmt.Errorf("volume %s: %w", v.Name, err)
			}
		case v.Secret != nil:
			s, err := w.a.client.CoreV1().Secrets(pod.Namespace).Get(ctx, v.Secret.SecretName, metav1.GetOptions{})
			if err != nil && !(apierrors.IsNotFound(err) && optional(v.Secret.Optional)) {
				return fmt.Errorf("volume %s: secret %q: %w", v.Name, v.Secret.SecretName, err)
			}
			data := map[string][]byte{}
			if s != nil {
				data = s.Data
			}
			if err := writeFiles(dir, data, v.Secret.Items, v.Secret.DefaultMode); err != nil {
				return fmt.Errorf("volume %s: %w", v.Name, err)
			}
		default:
			w.a.log.Warn("agent: volume type not supported by this node; using an empty directory",
				"pod", pod.Namespace+"/"+pod.Name, "volume", v.Name)
			if err := os.MkdirAll(dir, 0o777); err != nil {
				return fmt.Errorf("volume %s: %w", v.Name, err)
			}
		}
		vols[v.Name] = dir
	}
	w.volumes = vols
	return nil
}

// writeFiles writes a configMap's or secret's keys (or the listed items)
// as files.
func writeFiles(dir string, data map[string][]byte, items []corev1.KeyToPath, mode *int32) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	perm := os.FileMode(0o644)
	if mode != nil {
		perm = os.FileMode(*mode)
	}
	write := func(rel string, b []byte, p os.FileMode) error {
		if strings.Contains(rel, "..") || filepath.IsAbs(rel) {
			return fmt.Errorf("bad path %q", rel)
		}
		path := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(path, b, p); err != nil {
			return err
		}
		return os.Chmod(path, p)
	}
	if len(items) == 0 {
		for k, b := range data {
			if err := write(k, b, perm); err != nil {
				return err
			}
		}
		return nil
	}
	for _, it := range items {
		b, ok := data[it.Key]
		if !ok {
			return fmt.Errorf("key %q not found", it.Key)
		}
		p := perm
		if it.Mode != nil {
			p = os.FileMode(*it.Mode)
		}
		if err := write(it.Path, b, p); err != nil {
			return err
		}
	}
	return nil
}

// mounts maps a container's volumeMounts to runtime mounts.
func (w *podWorker) mounts(c *corev1.Container) []dataplane.Mount {
	var out []dataplane.Mount
	for _, m := range c.VolumeMounts {
		host, ok := w.volumes[m.Name]
		if !ok {
			continue
		}
		if m.SubPath != "" {
			host = filepath.Join(host, m.SubPath)
			os.MkdirAll(host, 0o777)
		}
		out = append(out, dataplane.Mount{HostPath: host, ContainerPath: m.MountPath, ReadOnly: m.ReadOnly})
	}
	return out
}

// cleanupVolumes unmounts tmpfs volumes and removes the pod directory.
func (w *podWorker) cleanupVolumes() {
	dir := w.a.podDir(w.uid)
	ents, _ := os.ReadDir(filepath.Join(dir, "volumes"))
	for _, e := range ents {
		p := filepath.Join(dir, "volumes", e.Name())
		if mounted(p) {
			unix.Unmount(p, unix.MNT_DETACH)
		}
	}
	if err := os.RemoveAll(dir); err != nil {
		w.a.log.Warn("agent: remove pod directory", "dir", dir, "err", err)
	}
}

// mounted reports whether path is a mount point (its device differs from
// its parent's).
func mounted(path string) bool {
	var st, parent unix.Stat_t
	if unix.Stat(path, &st) != nil || unix.Stat(filepath.Dir(path), &parent) != nil {
		return false
	}
	return st.Dev != parent.Dev
}
