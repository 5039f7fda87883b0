// Package namespace is the namespace controller. Deleting a namespace
// makes the API server delete its content and then the namespace; what
// cannot go at once (pods in graceful termination, objects with
// finalizers) keeps the namespace Terminating. The controller asks the
// API server to finish the deletion again until the namespace is gone.
package namespace

import (
	"errors"
	"time"

	"github.com/tugboat-dev/tugboat/hostapi"
	"github.com/tugboat-dev/tugboat/plugins/controllers/internal/kube"
	"github.com/tugboat-dev/tugboat/sdk"
)

// Namespaces is the reconciled resource.
const Namespaces = "namespaces"

// RetryMillis is how often a terminating namespace is re-checked.
const RetryMillis = 2000

// Manifest is the plugin's manifest.
func Manifest() sdk.Manifest {
	return sdk.Manifest{
		Name:   "namespace",
		Kinds:  []string{sdk.KindController},
		Rules:  []sdk.Rule{{Verbs: []string{"get", "list", "delete"}, Resources: []string{Namespaces}}},
		Grants: []string{hostapi.CapClock},
	}
}

// Spec is the plugin's controller spec.
func Spec() sdk.ControllerSpec {
	return sdk.ControllerSpec{Watches: []sdk.Watch{{Resource: Namespaces, Enqueue: hostapi.EnqueueSelf}}}
}

// Controller finishes namespace deletions.
type Controller struct{}

// New returns the controller.
func New() *Controller { return &Controller{} }

// Reconcile re-issues the deletion of a terminating namespace.
func (c *Controller) Reconcile(req sdk.ReconcileRequest) (sdk.ReconcileResult, error) {
	obj, err := sdk.Get(Namespaces, "", req.Name)
	if errors.Is(err, sdk.ErrNotFound) {
		return sdk.ReconcileResult{}, nil
	}
	if err != nil {
		return sdk.ReconcileResult{}, err
	}
	m := kube.ReadMeta(obj)
	if !m.Deleting && kube.Str(obj, "status", "phase") != "Terminating" {
		return sdk.ReconcileResult{}, nil
	}
	// The API server's own delete request finishes what it can; step in
	// only for a namespace that stays terminating.
	if since, ok := obj.Get("metadata", "deletionTimestamp"); ok {
		if now, err := sdk.Now(); err == nil {
			if left := kube.Time(since).Add(RetryMillis * time.Millisecond).Sub(now); left > 0 {
				return sdk.ReconcileResult{RequeueAfterMillis: left.Milliseconds() + 1}, nil
			}
		}
	}
	err = sdk.DeleteObject(Namespaces, "", req.Name, nil)
	switch {
	case errors.Is(err, sdk.ErrNotFound):
		return sdk.ReconcileResult{}, nil
	case err != nil:
		return sdk.ReconcileResult{}, err
	}
	if _, err := sdk.Get(Namespaces, "", req.Name); errors.Is(err, sdk.ErrNotFound) {
		return sdk.ReconcileResult{}, nil
	}
	return sdk.ReconcileResult{RequeueAfterMillis: RetryMillis}, nil
}
