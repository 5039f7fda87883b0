package plugintest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/tugboat-dev/tugboat/hostapi"
	"github.com/tugboat-dev/tugboat/kernel/errdefs"
	"github.com/tugboat-dev/tugboat/sdk"
	"sigs.k8s.io/yaml"
)

// Cache is a fake of the kernel's informer cache: it serves a plugin's Get
// and List host calls from objects the test adds, and records its log
// lines. The same Cache backs native runs (as an sdk.Host) and Wasm runs
// (as runtime.HostServices). Writes are refused with a permission error.
// Safe for concurrent use.
type Cache struct {
	mu      sync.Mutex
	objects map[string]map[string][]byte // resource -> "ns/name" -> JSON
	logs    []string
}

// NewCache returns a cache holding objs (JSON or YAML), each stored under
// the resource its apiVersion and kind map to (see ResourceOf).
func NewCache(t testing.TB, objs ...string) *Cache {
	t.Helper()
	c := &Cache{objects: make(map[string]map[string][]byte)}
	for _, o := range objs {
		c.Add(t, o)
	}
	return c
}

// Add stores obj (JSON or YAML) under its resource.
func (c *Cache) Add(t testing.TB, obj string) {
	t.Helper()
	raw, err := yaml.YAMLToJSON([]byte(obj))
	if err != nil {
		t.Fatalf("plugintest: object is neither JSON nor YAML: %v", err)
	}
	var m meta
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("plugintest: object: %v", err)
	}
	if m.Metadata.Name == "" {
		t.Fatalf("plugintest: object has no metadata.name")
	}
	res := ResourceOf(m.APIVersion, m.Kind)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.objects[res] == nil {
		c.objects[res] = make(map[string][]byte)
	}
	c.objects[res][m.Metadata.Namespace+"/"+m.Metadata.Name] = raw
}

// Logs returns the log lines the plugin wrote, as "LEVEL message".
func (c *Cache) Logs() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.logs)
}

func (c *Cache) log(level sdk.Level, msg string) {
	name := [...]string{"DEBUG", "INFO", "WARN", "ERROR"}
	l := "LEVEL" + fmt.Sprint(int(level))
	if level >= 0 && int(level) < len(name) {
		l = name[level]
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.logs = append(c.logs, l+" "+msg)
}

type meta struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name      string            `json:"name"`
		Namespace string            `json:"namespace"`
		Labels    map[string]string `json:"labels"`
	} `json:"metadata"`
}

var errNotFound = errors.New("not found")

// get returns one object or errNotFound.
func (c *Cache) get(req hostapi.GetRequest) ([]byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	obj, ok := c.objects[req.Resource][req.Namespace+"/"+req.Name]
	if !ok {
		return nil, fmt.Errorf("%s %s/%s: %w", req.Resource, req.Namespace, req.Name, errNotFound)
	}
	return slices.Clone(obj), nil
}

// list returns the objects of a resource in key order, filtered by
// namespace and by equality-based label selectors and metadata.name /
// metadata.namespace field selectors.
func (c *Cache) list(req hostapi.ListRequest) ([][]byte, error) {
	labels, err := parseSelector(req.LabelSelector)
	if err != nil {
		return nil, err
	}
	fields, err := parseSelector(req.FieldSelector)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	keys := make([]string, 0, len(c.objects[req.Resource]))
	for k := range c.objects[req.Resource] {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var out [][]byte
	for _, k := range keys {
		raw := c.objects[req.Resource][k]
		var m meta
		if err := json.Unmarshal(raw, &m); err != nil {
			return nil, err
		}
		if req.Namespace != "" && m.Metadata.Namespace != req.Namespace {
			continue
		}
		fieldValues := map[string]string{"metadata.name": m.Metadata.Name, "metadata.namespace": m.Metadata.Namespace}
		ok, err := fields.matches(fieldValues, true)
		if err != nil {
			return nil, err
		}
		if lok, _ := labels.matches(m.Metadata.Labels, false); ok && lok {
			out = append(out, slices.Clone(raw))
		}
	}
	return out, nil
}

// requirement is one term of an equality-based selector.
type requirement struct {
	key, value string
	op         string // "=", "!=", "exists", "!exists"
}

type selector []requirement

var errBadSelector = errors.New("invalid selector")

func parseSelector(s string) (selector, error) {
	var sel selector
	for _, term := range strings.Split(s, ",") {
		term = strings.TrimSpace(term)
		switch {
		case term == "":
		case strings.Contains(term, "!="):
			k, v, _ := strings.Cut(term, "!=")
			sel = append(sel, requirement{strings.TrimSpace(k), strings.TrimSpace(v), "!="})
		case strings.Contains(term, "=="):
			k, v, _ := strings.Cut(term, "==")
			sel = append(sel, requirement{strings.TrimSpace(k), strings.TrimSpace(v), "="})
		case strings.Contains(term, "="):
			k, v, _ := strings.Cut(term, "=")
			sel = append(sel, requirement{strings.TrimSpace(k), strings.TrimSpace(v), "="})
		case strings.HasPrefix(term, "!"):
			sel = append(sel, requirement{key: strings.TrimSpace(term[1:]), op: "!exists"})
		case strings.ContainsAny(term, " ()"):
			return nil, fmt.Errorf("selector %q (plugintest supports =, ==, != and existence): %w", s, errBadSelector)
		default:
			sel = append(sel, requirement{key: term, op: "exists"})
		}
	}
	return sel, nil
}

// matches reports whether values satisfy the selector; for field
// selectors (known) an unknown key is an error.
func (sel selector) matches(values map[string]string, known bool) (bool, error) {
	for _, r := range sel {
		v, ok := values[r.key]
		if known && !ok {
			return false, fmt.Errorf("field %q: %w", r.key, errBadSelector)
		}
		switch r.op {
		case "=":
			if !ok || v != r.value {
				return false, nil
			}
		case "!=":
			if ok && v == r.value {
				return false, nil
			}
		case "exists":
			if !ok {
				return false, nil
			}
		case "!exists":
			if ok {
				return false, nil
			}
		}
	}
	return true, nil
}

// nativeHost adapts a Cache to sdk.Host, checking the plugin's manifest
// rules like the runtime does.
type nativeHost struct {
	c     *Cache
	rules []hostapi.Rule
}

func (h nativeHost) Log(level sdk.Level, msg string) { h.c.log(level, msg) }

func (h nativeHost) Get(req sdk.GetRequest) ([]byte, error) {
	if !allows(h.rules, hostapi.VerbGet, req.Resource) {
		return nil, sdk.ErrPermission
	}
	b, err := h.c.get(req)
	return b, sdkError(err)
}

func (h nativeHost) List(req sdk.ListRequest) ([][]byte, error) {
	if !allows(h.rules, hostapi.VerbList, req.Resource) {
		return nil, sdk.ErrPermission
	}
	items, err := h.c.list(req)
	return items, sdkError(err)
}

// allows reports whether rules grant verb on resource ("*" matches all).
func allows(rules []hostapi.Rule, verb, resource string) bool {
	for _, r := range rules {
		if (slices.Contains(r.Verbs, verb) || slices.Contains(r.Verbs, "*")) &&
			(slices.Contains(r.Resources, resource) || slices.Contains(r.Resources, "*")) {
			return true
		}
	}
	return false
}

func (h nativeHost) Write(sdk.WriteRequest) ([]byte, error) { return nil, sdk.ErrPermission }

func (h nativeHost) Now() (int64, error) { return 0, sdk.ErrPermission }

func sdkError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, errNotFound):
		return sdk.ErrNotFound
	case errors.Is(err, errBadSelector):
		return sdk.ErrInvalid
	}
	return sdk.ErrInternal
}

// hostServices adapts a Cache to runtime.HostServices.
type hostServices struct{ c *Cache }

func (h hostServices) Get(_ context.Context, req hostapi.GetRequest) ([]byte, error) {
	b, err := h.c.get(req)
	return b, kernelError(err)
}

func (h hostServices) List(_ context.Context, req hostapi.ListRequest) ([][]byte, error) {
	items, err := h.c.list(req)
	return items, kernelError(err)
}

func (h hostServices) Write(context.Context, hostapi.WriteRequest) ([]byte, error) {
	return nil, fmt.Errorf("plugintest cache is read-only: %w", errdefs.ErrPermission)
}

func kernelError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, errNotFound):
		return fmt.Errorf("%w: %w", err, errdefs.ErrNotFound)
	case errors.Is(err, errBadSelector):
		return fmt.Errorf("%w: %w", err, errdefs.ErrInvalid)
	}
	return err
}
