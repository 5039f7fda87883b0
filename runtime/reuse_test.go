package runtime

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	kscheduler "github.com/tugboat-dev/tugboat/kernel/scheduler"
)

// TestInputReuse: a module built with the SDK promises to keep its input
// buffer (hostapi.ExportInputReuse), and the host writes inputs of every
// size correctly whether it reuses the buffer (small deltas), grows it,
// or allocates one beyond the promise (the full node table).
func TestInputReuse(t *testing.T) {
	e, _ := newTestEngine(t)
	// plugintest.BuildWasm imports this package: build by hand.
	path := filepath.Join(t.TempDir(), "nodename.wasm")
	cmd := exec.Command("go", "build", "-buildmode=c-shared", "-o", path, "../plugins/scheduler/nodename")
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build nodename: %v\n%s", err, out)
	}
	p := loadGuest(t, e, PluginConfig{Name: "NodeName", Path: path, PoolSize: 1, MemoryLimit: DefaultSchedulerMemoryLimit})
	// Relevance would keep the driver from calling nodename for pods
	// without spec.nodeName; every pod here names one.
	prof, err := kscheduler.NewProfile(kscheduler.DefaultSchedulerName, []kscheduler.PluginConfig{{Plugin: p, Filter: true}})
	if err != nil {
		t.Fatal(err)
	}
	snap := kscheduler.NewSnapshot()
	ctx := context.Background()
	schedule := func(i int, node string) {
		t.Helper()
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "p" + strconv.Itoa(i)},
			Spec: corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "c", Image: "i"}}}}
		res, err := prof.Schedule(ctx, snap, pod, kscheduler.Options{AllNodes: true})
		if err != nil {
			t.Fatal(err)
		}
		if res.Node != node {
			t.Fatalf("pod %d: node %q (%s), want %s", i, res.Node, res.Message, node)
		}
	}
	// Growing node counts: each call sends the new nodes and every node
	// as a candidate (from a few hundred bytes to past the promise).
	have := 0
	for i, n := range []int{3, 50, 400, 3000, 3000, 10} {
		for ; have < n; have++ {
			snap.SetNode(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n" + strconv.Itoa(have)}})
		}
		for ; have > n; have-- {
			snap.RemoveNode("n" + strconv.Itoa(have-1))
		}
		schedule(i, "n"+strconv.Itoa(n-1))
	}
	if snap.NumNodes() != 10 {
		t.Fatalf("%d nodes, want 10", snap.NumNodes())
	}
	in := p.pool.idle[0]
	if in.reuseMax != 64<<10 {
		t.Fatalf("guest promised %d bytes, want 64 KiB", in.reuseMax)
	}
	if in.inCap == 0 || in.inCap > in.reuseMax {
		t.Fatalf("host keeps an input buffer of %d bytes, want one within the promise", in.inCap)
	}
	if st := p.Stats(); st.Started != 1 {
		t.Fatalf("%d instances started, want 1 (no trap)", st.Started)
	}
}
