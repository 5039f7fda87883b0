package leaderelect_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/tugboat-dev/tugboat/kernel/apiserver"
	"github.com/tugboat-dev/tugboat/kernel/apiserver/apiservertest"
	"github.com/tugboat-dev/tugboat/kernel/errdefs"
	"github.com/tugboat-dev/tugboat/kernel/leaderelect"
)

func startAPI(t testing.TB) *rest.Config {
	t.Helper()
	_, cfg := apiservertest.Start(t, apiserver.Config{})
	return cfg
}

// waitFor polls cond; the bound is a hang guard, not a timing assertion.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

// TestRunOneLeaderAtATime: of two contenders one leads; the Lease names
// it; when it stops (releasing the Lease) the other leads; the two never
// lead at once.
func TestRunOneLeaderAtATime(t *testing.T) {
	cfg := startAPI(t)
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var leading, overlap atomic.Int32
	terms := map[string]*atomic.Int32{"a": {}, "b": {}}
	lead := func(id string) func(context.Context) {
		return func(ctx context.Context) {
			if leading.Add(1) > 1 {
				overlap.Add(1)
			}
			terms[id].Add(1)
			<-ctx.Done()
			leading.Add(-1)
		}
	}
	var wg sync.WaitGroup
	start := func(id string) context.CancelFunc {
		ctx, cancel := context.WithCancel(context.Background())
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := leaderelect.Run(ctx, leaderelect.Config{Client: cfg, Name: "test-lease", Identity: id,
				LeaseDuration: 15 * time.Second, RenewDeadline: 10 * time.Second, RetryPeriod: 50 * time.Millisecond}, lead(id))
			if err != nil {
				t.Errorf("%s: %v", id, err)
			}
		}()
		return cancel
	}
	holder := func() string {
		l, err := cs.CoordinationV1().Leases("kube-system").Get(context.Background(), "test-lease", metav1.GetOptions{})
		if err != nil || l.Spec.HolderIdentity == nil {
			return ""
		}
		return *l.Spec.HolderIdentity
	}
	stopA := start("a")
	waitFor(t, "a leading", func() bool { return terms["a"].Load() == 1 && holder() == "a" })
	stopB := start("b")
	defer func() { stopB(); wg.Wait() }()
	time.Sleep(200 * time.Millisecond) // b retries a few times meanwhile
	if n := terms["b"].Load(); n != 0 {
		t.Fatalf("b led %d times while a held the lease", n)
	}
	stopA()
	waitFor(t, "b leading", func() bool { return terms["b"].Load() == 1 && holder() == "b" })
	if n := overlap.Load(); n != 0 {
		t.Errorf("two leaders at once %d times", n)
	}
}

func TestConfigRequiresNameAndClient(t *testing.T) {
	err := leaderelect.Run(context.Background(), leaderelect.Config{Name: "x"}, func(context.Context) {})
	if !errors.Is(err, errdefs.ErrInvalid) {
		t.Errorf("no client: %v, want ErrInvalid", err)
	}
	err = leaderelect.Run(context.Background(), leaderelect.Config{Client: &rest.Config{}}, func(context.Context) {})
	if !errors.Is(err, errdefs.ErrInvalid) {
		t.Errorf("no name: %v, want ErrInvalid", err)
	}
}
