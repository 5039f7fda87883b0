package controller

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"k8s.io/apimachinery/pkg/labels"

	"github.com/tugboat-dev/tugboat/hostapi"
	"github.com/tugboat-dev/tugboat/kernel/errdefs"
)

// The Driver serves the controllers' host calls (it satisfies
// runtime.HostServices). The runtime checks each plugin's capabilities
// before calling these. Errors wrap errdefs sentinels.

// current returns the running term or ErrUnavailable.
func (d *Driver) current() (*term, error) {
	t := d.term.Load()
	if t == nil {
		return nil, fmt.Errorf("controllers are not running (not the leader): %w", errdefs.ErrUnavailable)
	}
	return t, nil
}

// Get returns one object's JSON from the cache, or from the API server if
// the cache does not hold it.
func (d *Driver) Get(ctx context.Context, req hostapi.GetRequest) ([]byte, error) {
	t, err := d.current()
	if err != nil {
		return nil, err
	}
	info, err := t.res.lookup(req.Resource)
	if err != nil {
		return nil, err
	}
	if req.Name == "" {
		return nil, fmt.Errorf("get %s without a name: %w", req.Resource, errdefs.ErrInvalid)
	}
	if c := t.caches[info.name]; c != nil {
		if o := c.get(nsFor(info, req.Namespace), req.Name); o != nil {
			return o.raw, nil
		}
	}
	return d.api.do(ctx, http.MethodGet, info.path(req.Namespace, req.Name, ""), nil, "", nil)
}

func nsFor(info *resourceInfo, namespace string) string {
	if !info.namespaced {
		return ""
	}
	return namespace
}

// fieldFilter is a parsed field selector of the fields the cache serves.
type fieldFilter struct {
	name, namespace, ownerUID string
	set                       map[string]bool
}

func parseFields(s string) (fieldFilter, bool) {
	f := fieldFilter{set: make(map[string]bool)}
	if strings.TrimSpace(s) == "" {
		return f, true
	}
	for _, term := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(term, "=")
		if !ok || strings.HasSuffix(k, "!") {
			return f, false
		}
		k, v = strings.TrimSpace(strings.TrimSuffix(k, "=")), strings.TrimSpace(strings.TrimPrefix(v, "="))
		switch k {
		case "metadata.name":
			f.name = v
		case "metadata.namespace":
			f.namespace = v
		case hostapi.FieldOwnerUID:
			f.ownerUID = v
		default:
			return f, false
		}
		f.set[k] = true
	}
	return f, true
}

func (f fieldFilter) matches(o *object) bool {
	if f.set["metadata.name"] && o.name != f.name {
		return false
	}
	if f.set["metadata.namespace"] && o.namespace != f.namespace {
		return false
	}
	if f.set[hostapi.FieldOwnerUID] {
		for _, r := range o.owners {
			if r.UID == f.ownerUID {
				return true
			}
		}
		return false
	}
	return true
}

// List returns the objects of a resource from the cache, in key order,
// filtered by namespace, label selector and field selector
// (metadata.name, metadata.namespace, hostapi.FieldOwnerUID). Resource
// hostapi.AllResources with an owner selector lists the dependents of an
// owner across every cached resource. A resource without a cache, or other
// field selectors, are listed from the API server.
func (d *Driver) List(ctx context.Context, req hostapi.ListRequest) ([][]byte, error) {
	t, err := d.current()
	if err != nil {
		return nil, err
	}
	sel, err := labels.Parse(req.LabelSelector)
	if err != nil {
		return nil, fmt.Errorf("label selector %q: %w: %w", req.LabelSelector, errdefs.ErrInvalid, err)
	}
	fields, cacheable := parseFields(req.FieldSelector)
	if req.Resource == hostapi.AllResources {
		if !cacheable || !fields.set[hostapi.FieldOwnerUID] {
			return nil, fmt.Errorf("list of all resources needs a %s field selector: %w", hostapi.FieldOwnerUID, errdefs.ErrInvalid)
		}
		var out [][]byte
		for _, k := range t.owners.dependentsOf(fields.ownerUID) {
			c := t.caches[k.res]
			if c == nil || (req.Namespace != "" && k.ns != req.Namespace) {
				continue
			}
			if o := c.get(k.ns, k.name); o != nil && sel.Matches(labels.Set(o.labels)) && fields.matches(o) {
				out = append(out, o.raw)
			}
		}
		return out, nil
	}
	info, err := t.res.lookup(req.Resource)
	if err != nil {
		return nil, err
	}
	if c := t.caches[info.name]; c != nil && cacheable {
		var out [][]byte
		for _, o := range c.list(nsFor(info, req.Namespace), sel) {
			if fields.matches(o) {
				out = append(out, o.raw)
			}
		}
		return out, nil
	}
	return d.liveList(ctx, info, req)
}

func (d *Driver) liveList(ctx context.Context, info *resourceInfo, req hostapi.ListRequest) ([][]byte, error) {
	q := url.Values{}
	if req.LabelSelector != "" {
		q.Set("labelSelector", req.LabelSelector)
	}
	if req.FieldSelector != "" {
		q.Set("fieldSelector", req.FieldSelector)
	}
	body, err := d.api.do(ctx, http.MethodGet, info.path(req.Namespace, "", ""), q, "", nil)
	if err != nil {
		return nil, err
	}
	var l struct {
		Items []json.RawMessage `json:"items"`
	}
	if err := json.Unmarshal(body, &l); err != nil {
		return nil, fmt.Errorf("decode %s list: %w: %w", info.name, errdefs.ErrInvalid, err)
	}
	out := make([][]byte, 0, len(l.Items))
	for _, it := range l.Items {
		o, err := decodeObject(info, it)
		if err != nil {
			return nil, err
		}
		out = append(out, o.raw)
	}
	return out, nil
}

// Write creates, updates, patches or deletes an object through the API
// server and puts the result in the cache, so the controller's next read
// sees its write.
func (d *Driver) Write(ctx context.Context, req hostapi.WriteRequest) ([]byte, error) {
	t, err := d.current()
	if err != nil {
		return nil, err
	}
	info, err := t.res.lookup(req.Resource)
	if err != nil {
		return nil, err
	}
	switch req.Subresource {
	case "", "status", "scale", "binding", "eviction":
	default:
		return nil, fmt.Errorf("write subresource %q: %w", req.Subresource, errdefs.ErrInvalid)
	}
	ns := nsFor(info, req.Namespace)
	var method, contentType string
	path := info.path(ns, req.Name, req.Subresource)
	body := []byte(req.Object)
	switch req.Verb {
	case hostapi.VerbCreate:
		method, contentType = http.MethodPost, "application/json"
		if req.Subresource == "" {
			path = info.path(ns, "", "")
		}
	case hostapi.VerbUpdate:
		method, contentType = http.MethodPut, "application/json"
	case hostapi.VerbPatch:
		method, contentType = http.MethodPatch, req.PatchType
		if contentType == "" {
			contentType = hostapi.PatchMerge
		}
	case hostapi.VerbDelete:
		method = http.MethodDelete
		if len(body) > 0 {
			contentType = "application/json"
		} else {
			body = nil
		}
	default:
		return nil, fmt.Errorf("write verb %q: %w", req.Verb, errdefs.ErrInvalid)
	}
	if req.Verb != hostapi.VerbCreate && req.Name == "" {
		return nil, fmt.Errorf("%s %s without a name: %w", req.Verb, req.Resource, errdefs.ErrInvalid)
	}
	out, err := d.api.do(ctx, method, path, nil, contentType, body)
	if err != nil {
		return nil, err
	}
	if req.Subresource != "" && req.Subresource != "status" {
		return out, nil
	}
	c := t.caches[info.name]
	if req.Verb == hostapi.VerbDelete {
		var head struct {
			Kind string `json:"kind"`
		}
		_ = json.Unmarshal(out, &head)
		if head.Kind == "Status" {
			if c != nil {
				if old := c.remove(ns, req.Name, ""); old != nil {
					t.notify(info, old, nil)
				}
			}
			return nil, nil
		}
	}
	o, err := decodeObject(info, out)
	if err != nil {
		return out, nil
	}
	if c != nil {
		if old, stored := c.upsert(o, false); stored {
			t.notify(info, old, o)
		}
	}
	return o.raw, nil
}
