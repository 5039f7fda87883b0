package main

import (
	"log/slog"
	"net/http"

	"k8s.io/client-go/rest"

	"github.com/tugboat-dev/tugboat/kernel/apiserver"
	"github.com/tugboat-dev/tugboat/kernel/loopback"
	"github.com/tugboat-dev/tugboat/kernel/pki"
	"github.com/tugboat-dev/tugboat/kernel/store"
	"github.com/tugboat-dev/tugboat/runtime"
)

// componentEnv is what a component gets to start with.
type componentEnv struct {
	Config Config
	Logger *slog.Logger
	// Engine loads Wasm plugins (shared compilation cache).
	Engine *runtime.Engine
	// Store is the kernel store, for components that own kernel state
	// (leases); everything else goes through the API.
	Store store.Store
	// Certs is the server's PKI (to issue node certificates).
	Certs *pki.PKI
	// APIServer is the API server itself (to attach node connectors and
	// the like).
	APIServer *apiserver.Server
	// API is the API handler (before authentication); Client returns a
	// client-go config served by it in-process as user.
	API http.Handler
	// ServerURL is the URL remote clients use.
	ServerURL string
}

// Client returns an in-process client config acting as user.
func (e componentEnv) Client(user apiserver.User) *rest.Config {
	return loopback.Config(e.API, user)
}
