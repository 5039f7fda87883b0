// Package apiservertest serves a real API server in-process for tests of
// the components that are its clients.
package apiservertest

import (
	"testing"

	"k8s.io/client-go/rest"

	"github.com/tugboat-dev/tugboat/kernel/apiserver"
	"github.com/tugboat-dev/tugboat/kernel/loopback"
	tbadger "github.com/tugboat-dev/tugboat/kernel/store/badger"
)

// Admin is the user of the rest.Config that Start returns: a cluster
// administrator.
var Admin = apiserver.User{Name: "system:admin", Groups: []string{"system:masters"}}

// Start serves an API server with cfg until the test ends and returns it
// with an in-process client config for Admin. When cfg.Store is nil it
// opens a Badger store in t.TempDir() (with cfg.Logger), closed at the
// end of the test.
func Start(t testing.TB, cfg apiserver.Config) (*apiserver.Server, *rest.Config) {
	t.Helper()
	if cfg.Store == nil {
		st, err := tbadger.Open(tbadger.Options{Dir: t.TempDir(), Logger: cfg.Logger})
		if err != nil {
			t.Fatalf("open store: %v", err)
		}
		t.Cleanup(func() { st.Close() })
		cfg.Store = st
	}
	api, err := apiserver.New(cfg)
	if err != nil {
		t.Fatalf("new apiserver: %v", err)
	}
	t.Cleanup(api.Close)
	return api, loopback.Config(api.Handler(), Admin)
}
