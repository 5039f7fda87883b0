package plugintest

import (
	"encoding/json"
	"sync"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"

	"github.com/tugboat-dev/tugboat/hostapi"
	"github.com/tugboat-dev/tugboat/sdk"
)

// Harness runs an admission plugin natively, in the test's process: the
// plugin's host calls go to a Cache. Requests take the same bytes path as
// in a Wasm guest (JSON request -> SDK decode -> Admit -> JSON response).
// Safe for concurrent use; calls into plugins are serialised because the
// SDK's host is process-wide.
type Harness struct {
	mod   *sdk.Module
	cache *Cache
}

var _ Reviewer = (*Harness)(nil)

// hostMu serialises plugin calls while a test's Cache is the SDK's host.
var hostMu sync.Mutex

// New configures plugin p (with manifest m) with settings (JSON or YAML;
// "" for none) and returns a harness whose host calls see cache (nil: an
// empty cache). A configure error fails the test; use Configure to test
// settings validation.
func New(t testing.TB, p sdk.Admitter, m sdk.Manifest, settings string, cache *Cache) *Harness {
	t.Helper()
	mod, err := sdk.NewAdmission(p, m)
	if err != nil {
		t.Fatalf("plugintest: %v", err)
	}
	return newHarness(t, mod, settings, cache)
}

// NewRegistered is New for the plugin the test's package registered with
// sdk.RegisterAdmission (a plugin's main package testing itself).
func NewRegistered(t testing.TB, settings string, cache *Cache) *Harness {
	t.Helper()
	mod, err := sdk.Registered()
	if err != nil {
		t.Fatalf("plugintest: %v", err)
	}
	return newHarness(t, mod, settings, cache)
}

func newHarness(t testing.TB, mod *sdk.Module, settings string, cache *Cache) *Harness {
	t.Helper()
	if cache == nil {
		cache = NewCache(t)
	}
	h := &Harness{mod: mod, cache: cache}
	if err := h.configure(t, settings); err != nil {
		t.Fatalf("plugintest: configure %s: %v", mod.Manifest().Name, err)
	}
	return h
}

// Configure runs plugin p's settings validation and returns its error.
func Configure(t testing.TB, p sdk.Admitter, m sdk.Manifest, settings string) error {
	t.Helper()
	mod, err := sdk.NewAdmission(p, m)
	if err != nil {
		t.Fatalf("plugintest: %v", err)
	}
	h := &Harness{mod: mod, cache: NewCache(t)}
	return h.configure(t, settings)
}

func (h *Harness) configure(t testing.TB, settings string) error {
	t.Helper()
	var err error
	h.withHost(func() { err = h.mod.Configure(settingsJSON(settings)) })
	return err
}

// Cache returns the harness's cache.
func (h *Harness) Cache() *Cache { return h.cache }

// Module returns the plugin's module.
func (h *Harness) Module() *sdk.Module { return h.mod }

// Review runs r through the plugin's admit entry point and decodes the
// response like the API server.
func (h *Harness) Review(t testing.TB, r Request) Result {
	t.Helper()
	req := AdmissionRequest(t, r)
	in, err := json.Marshal(req)
	if err != nil {
		t.Fatalf("plugintest: encode request: %v", err)
	}
	var out []byte
	h.withHost(func() { out, err = h.mod.Call(hostapi.ExportAdmit, in) })
	if err != nil {
		t.Fatalf("plugintest: admit: %v", err)
	}
	var resp admissionv1.AdmissionResponse
	if err := json.Unmarshal(out, &resp); err != nil {
		t.Fatalf("plugintest: plugin's response %q does not decode as an AdmissionResponse: %v", out, err)
	}
	return result(t, req, &resp)
}

// Admit calls the plugin's Admit directly with a decoded request (the
// plugin's host calls see the harness's cache).
func (h *Harness) Admit(t testing.TB, r Request) (*sdk.AdmissionResponse, error) {
	t.Helper()
	in, err := json.Marshal(AdmissionRequest(t, r))
	if err != nil {
		t.Fatalf("plugintest: encode request: %v", err)
	}
	req, err := sdk.DecodeAdmissionRequest(in)
	if err != nil {
		t.Fatalf("plugintest: %v", err)
	}
	var resp *sdk.AdmissionResponse
	h.withHost(func() { resp, err = h.mod.Plugin().Admit(req) })
	return resp, err
}

func (h *Harness) withHost(fn func()) {
	hostMu.Lock()
	defer hostMu.Unlock()
	prev := sdk.SetHost(nativeHost{c: h.cache, rules: h.mod.Manifest().Rules})
	defer sdk.SetHost(prev)
	fn()
}
