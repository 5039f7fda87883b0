package runtime

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"

	"github.com/tugboat-dev/tugboat/hostapi"
	"github.com/tugboat-dev/tugboat/kernel/controller"
	"github.com/tugboat-dev/tugboat/kernel/errdefs"
)

// Controller adapts a controller plugin to the kernel's controller driver
// (controller.Reconciler). Safe for concurrent use: each call takes its
// own instance from the plugin's pool.
type Controller struct {
	p    *Plugin
	spec hostapi.ControllerSpec
}

var _ controller.Reconciler = (*Controller)(nil)

// NewController checks that p declares hostapi.KindController and exports
// the controller entry points, and reads its ControllerSpec. The plugin
// should have been loaded with the driver as its HostServices.
func NewController(ctx context.Context, p *Plugin) (*Controller, error) {
	var err error
	switch {
	case !slices.Contains(p.manifest.Kinds, hostapi.KindController):
		err = fmt.Errorf("manifest declares kinds %v, not %s: %w", p.manifest.Kinds, hostapi.KindController, errdefs.ErrInvalid)
	case p.compiled.ExportedFunctions()[hostapi.ExportReconcile] == nil:
		err = fmt.Errorf("module does not export %s: %w", hostapi.ExportReconcile, errdefs.ErrInvalid)
	case p.compiled.ExportedFunctions()[hostapi.ExportController] == nil:
		err = fmt.Errorf("module does not export %s: %w", hostapi.ExportController, errdefs.ErrInvalid)
	}
	if err != nil {
		return nil, fmt.Errorf("controller plugin %q: %w", p.name, err)
	}
	raw, err := p.Call(ctx, hostapi.ExportController, nil)
	if err != nil {
		return nil, err
	}
	c := &Controller{p: p}
	if err := json.Unmarshal(raw, &c.spec); err != nil {
		return nil, fmt.Errorf("controller plugin %q: decode spec: %w: %w", p.name, errdefs.ErrInvalid, err)
	}
	if len(c.spec.Watches) == 0 {
		return nil, fmt.Errorf("controller plugin %q: spec watches nothing: %w", p.name, errdefs.ErrInvalid)
	}
	return c, nil
}

// Spec returns the plugin's ControllerSpec.
func (c *Controller) Spec() hostapi.ControllerSpec { return c.spec }

// Plugin returns the plugin behind the controller.
func (c *Controller) Plugin() *Plugin { return c.p }

// Reconcile calls the plugin's reconcile export with req. A trap, a
// timeout or an undecodable result is an error (the driver retries the
// key with backoff); the plugin's own error comes back in the result.
func (c *Controller) Reconcile(ctx context.Context, req hostapi.ReconcileRequest) (hostapi.ReconcileResult, error) {
	in := appendReconcileRequest(make([]byte, 0, 64+len(req.Resource)+len(req.Namespace)+len(req.Name)), req)
	out, err := c.p.Call(ctx, hostapi.ExportReconcile, in)
	if err != nil {
		return hostapi.ReconcileResult{}, err
	}
	var res hostapi.ReconcileResult
	if len(out) > 0 {
		if err := json.Unmarshal(out, &res); err != nil {
			return res, fmt.Errorf("plugin %q: decode reconcile result: %w: %w", c.p.name, errdefs.ErrInvalid, err)
		}
	}
	return res, nil
}

func appendReconcileRequest(dst []byte, req hostapi.ReconcileRequest) []byte {
	b, _ := json.Marshal(req)
	return append(dst, b...)
}
