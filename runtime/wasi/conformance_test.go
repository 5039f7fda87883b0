package wasi_test

import (
	"context"
	"testing"

	"github.com/tugboat-dev/tugboat/kernel/dataplane"
	"github.com/tugboat-dev/tugboat/kernel/dataplane/dataplanetest"
	"github.com/tugboat-dev/tugboat/runtime/wasi"
)

// shellImage runs the suite's "/bin/sh -c" commands with the test
// workload, whose tiny shell knows the suite's scripts; any other command
// names its module (so "/no/such/binary" is a start error).
type shellImage struct{ *wasi.Runtime }

func (s shellImage) Start(ctx context.Context, spec dataplane.ContainerSpec) error {
	if spec.Image == "" && len(spec.Command) > 0 {
		spec.Image = spec.Command[0]
		if spec.Command[0] == "/bin/sh" {
			spec.Image = workload
		}
	}
	return s.Runtime.Start(ctx, spec)
}

// TestConformance runs the shared runtime suite on the wasm runtime.
func TestConformance(t *testing.T) {
	open := func(t testing.TB, dir string) (dataplane.Runtime, func()) {
		rt, err := wasi.New(context.Background(), wasi.Options{Dir: dir, CacheDir: cacheDir})
		if err != nil {
			t.Fatal(err)
		}
		return shellImage{rt}, func() { rt.Close() }
	}
	dataplanetest.Run(t, open, dataplanetest.Commands{
		Shell: []string{"/bin/sh", "-c"},
		Skip: map[string]string{
			"graceful stop":     "WASI has no signals: Stop ends a module at once (137) whatever the grace period",
			"exec":              "WASI cannot run a second command in a running module's context (Exec is not supported)",
			"network namespace": "WASI preview 1 modules have no network namespace (NetNS is ignored)",
			"adoption":          "modules run inside the runtime's process and end with it; a new runtime reports them exited (137)",
		},
	})
}
