package exec

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/tugboat-dev/tugboat/kernel/dataplane"
)

// Resource limits, where the machine allows: each container with a
// memory or CPU limit gets its own cgroup below the runtime's own, in the
// v1 memory and cpu hierarchies or in the v2 unified hierarchy (when its
// memory and cpu controllers are enabled there). The wrapper moves itself
// in before it runs the command, so every process of the container is
// inside. Without cgroups the limits are not applied.

// cgroupDirs creates the container's cgroups with spec's limits and
// returns them; none when there are no limits or no usable hierarchy.
func cgroupDirs(id string, spec dataplane.ContainerSpec) []string {
	if spec.MemoryLimit <= 0 && spec.CPUMilli <= 0 {
		return nil
	}
	own := ownCgroups()
	var dirs []string
	mk := func(root, path string, files map[string]string) {
		dir := filepath.Join(root, path, "tugboat-"+id)
		if err := os.Mkdir(dir, 0o755); err != nil && !os.IsExist(err) {
			return
		}
		for f, v := range files {
			if err := os.WriteFile(filepath.Join(dir, f), []byte(v), 0o644); err != nil {
				os.Remove(dir)
				return
			}
		}
		dirs = append(dirs, dir)
	}
	if p, ok := own["memory"]; ok && spec.MemoryLimit > 0 {
		mk("/sys/fs/cgroup/memory", p, map[string]string{"memory.limit_in_bytes": strconv.FormatInt(spec.MemoryLimit, 10)})
	}
	if p, ok := own["cpu"]; ok && spec.CPUMilli > 0 {
		mk("/sys/fs/cgroup/cpu", p, map[string]string{"cpu.cfs_period_us": "100000", "cpu.cfs_quota_us": strconv.FormatInt(spec.CPUMilli*100, 10)})
	}
	if len(dirs) > 0 {
		return dirs
	}
	if p, ok := own[""]; ok {
		root := unifiedRoot()
		ctrls, _ := os.ReadFile(filepath.Join(root, p, "cgroup.subtree_control"))
		files := map[string]string{}
		if spec.MemoryLimit > 0 && strings.Contains(string(ctrls), "memory") {
			files["memory.max"] = strconv.FormatInt(spec.MemoryLimit, 10)
		}
		if spec.CPUMilli > 0 && strings.Contains(string(ctrls), "cpu") {
			files["cpu.max"] = fmt.Sprintf("%d 100000", spec.CPUMilli*100)
		}
		if root != "" && len(files) > 0 {
			mk(root, p, files)
		}
	}
	return dirs
}

// ownCgroups maps each v1 controller (and "" for v2) to this process's
// cgroup path.
func ownCgroups() map[string]string {
	f, err := os.Open("/proc/self/cgroup")
	if err != nil {
		return nil
	}
	defer f.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		for _, c := range strings.Split(parts[1], ",") {
			out[c] = parts[2]
		}
	}
	return out
}

// unifiedRoot is where the v2 hierarchy is mounted ("" if nowhere).
func unifiedRoot() string {
	for _, p := range []string{"/sys/fs/cgroup", "/sys/fs/cgroup/unified"} {
		if _, err := os.Stat(filepath.Join(p, "cgroup.controllers")); err == nil {
			return p
		}
	}
	return ""
}

// cgroupScript is the wrapper's snippet that moves it into dirs.
func cgroupScript(dirs []string) string {
	var b strings.Builder
	for _, d := range dirs {
		fmt.Fprintf(&b, "echo $$ > %s && ", shellQuote(filepath.Join(d, "cgroup.procs")))
	}
	return b.String()
}

// oomKilled reports whether the kernel killed a process in dirs for
// running out of memory.
func oomKilled(dirs []string) bool {
	for _, d := range dirs {
		for _, f := range []string{"memory.oom_control", "memory.events"} {
			b, err := os.ReadFile(filepath.Join(d, f))
			if err != nil {
				continue
			}
			for _, l := range strings.Split(string(b), "\n") {
				if v, ok := strings.CutPrefix(l, "oom_kill "); ok && strings.TrimSpace(v) != "0" {
					return true
				}
			}
		}
	}
	return false
}

// removeCgroups removes the container's (empty) cgroups.
func removeCgroups(dirs []string) {
	for _, d := range dirs {
		os.Remove(d)
	}
}
