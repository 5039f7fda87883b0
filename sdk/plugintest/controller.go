package plugintest

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"

	"github.com/tugboat-dev/tugboat/hostapi"
	"github.com/tugboat-dev/tugboat/sdk"
)

// Cluster is an in-memory API server for testing controllers natively:
// it serves a controller's Get and List from its objects and applies its
// writes like the API server would (create with generateName, uid,
// resourceVersion and generation; update with the resourceVersion
// precondition; merge and JSON patches; delete with preconditions,
// finalizers and the orphan/foreground propagation finalizers), checking
// the manifest's rules. List supports full label selectors, equality field
// selectors on string fields (metadata.name, spec.nodeName, ...) and
// hostapi.FieldOwnerUID.
// Safe for concurrent use.
type Cluster struct {
	mu     sync.Mutex
	objs   map[string]map[string]map[string]any // resource -> ns/name -> object
	rv     int64
	uids   int
	writes []hostapi.WriteRequest
	logs   []string
	now    time.Time
}

// NewCluster returns a cluster holding objs (JSON or YAML) and a clock at
// 2026-01-01T00:00:00Z.
func NewCluster(t testing.TB, objs ...string) *Cluster {
	t.Helper()
	c := &Cluster{objs: make(map[string]map[string]map[string]any), now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	for _, o := range objs {
		c.Add(t, o)
	}
	return c
}

// Add stores obj (JSON or YAML), filling in uid, resourceVersion,
// creationTimestamp and generation when missing.
func (c *Cluster) Add(t testing.TB, obj string) {
	t.Helper()
	raw, err := yaml.YAMLToJSON([]byte(obj))
	if err != nil {
		t.Fatalf("plugintest: object is neither JSON nor YAML: %v", err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("plugintest: object: %v", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, err := c.create(resourceOfObject(m), m, true); err != nil {
		t.Fatalf("plugintest: add: %v", err)
	}
}

// Update changes one object in place (as another client would, e.g. a
// kubelet writing pod status), bumping its resourceVersion. It fails t if
// the object does not exist.
func (c *Cluster) Update(t testing.TB, resource, namespace, name string, change func(obj map[string]any)) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	o := c.objs[resource][namespace+"/"+name]
	if o == nil {
		t.Fatalf("plugintest: update %s %s/%s: not found", resource, namespace, name)
	}
	change(o)
	c.rv++
	metaOf(o)["resourceVersion"] = strconv.FormatInt(c.rv, 10)
}

// Remove deletes one object outright (as a node agent finishing a pod's
// deletion would).
func (c *Cluster) Remove(resource, namespace, name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.objs[resource], namespace+"/"+name)
}

// Advance moves the cluster's clock (sdk.Now) forward.
func (c *Cluster) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// Now returns the cluster's clock.
func (c *Cluster) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Get returns a copy of one object, or nil.
func (c *Cluster) Get(resource, namespace, name string) map[string]any {
	c.mu.Lock()
	defer c.mu.Unlock()
	o := c.objs[resource][namespace+"/"+name]
	if o == nil {
		return nil
	}
	return clone(o)
}

// List returns copies of the objects of a resource in namespace ("" for
// all), in key order.
func (c *Cluster) List(resource, namespace string) []map[string]any {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []map[string]any
	for _, k := range slices.Sorted(maps.Keys(c.objs[resource])) {
		if namespace == "" || strings.HasPrefix(k, namespace+"/") {
			out = append(out, clone(c.objs[resource][k]))
		}
	}
	return out
}

// Writes returns the writes the controller made, in order.
func (c *Cluster) Writes() []hostapi.WriteRequest {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.writes)
}

// ResetWrites forgets the recorded writes.
func (c *Cluster) ResetWrites() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.writes = nil
}

// Logs returns the controller's log lines.
func (c *Cluster) Logs() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.logs)
}

func clone(m map[string]any) map[string]any {
	b, _ := json.Marshal(m)
	var out map[string]any
	_ = json.Unmarshal(b, &out)
	return out
}

// Path reads a nested field of an object (nil if absent).
func Path(obj map[string]any, path ...string) any {
	var v any = obj
	for _, p := range path {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[p]
	}
	return v
}

func metaOf(o map[string]any) map[string]any {
	m, _ := o["metadata"].(map[string]any)
	if m == nil {
		m = map[string]any{}
		o["metadata"] = m
	}
	return m
}

func str(v any) string { s, _ := v.(string); return s }

func resourceOfObject(o map[string]any) string {
	return ResourceOf(str(o["apiVersion"]), str(o["kind"]))
}

var (
	errClusterNotFound = errors.New("not found")
	errClusterConflict = errors.New("conflict")
	errClusterExists   = errors.New("already exists")
	errClusterInvalid  = errors.New("invalid")
)

// create stores o under resource; c.mu is held.
func (c *Cluster) create(resource string, o map[string]any, keepMeta bool) (map[string]any, error) {
	m := metaOf(o)
	if str(m["name"]) == "" {
		gen := str(m["generateName"])
		if gen == "" {
			return nil, fmt.Errorf("object without name or generateName: %w", errClusterInvalid)
		}
		c.uids++
		m["name"] = gen + "x" + strconv.Itoa(c.uids)
	}
	key := str(m["namespace"]) + "/" + str(m["name"])
	if c.objs[resource] == nil {
		c.objs[resource] = make(map[string]map[string]any)
	}
	if _, ok := c.objs[resource][key]; ok {
		return nil, fmt.Errorf("%s %s: %w", resource, key, errClusterExists)
	}
	if !keepMeta || m["uid"] == nil {
		c.uids++
		m["uid"] = "uid-" + strconv.Itoa(c.uids)
	}
	if !keepMeta || m["creationTimestamp"] == nil {
		m["creationTimestamp"] = c.now.Format(time.RFC3339)
	}
	if m["generation"] == nil && resource != "pods" {
		m["generation"] = 1
	}
	c.rv++
	m["resourceVersion"] = strconv.FormatInt(c.rv, 10)
	c.objs[resource][key] = o
	return clone(o), nil
}

// apply is the host's write.
func (c *Cluster) apply(req hostapi.WriteRequest) ([]byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.writes = append(c.writes, req)
	key := req.Namespace + "/" + req.Name
	var out map[string]any
	var err error
	switch req.Verb {
	case hostapi.VerbCreate:
		var o map[string]any
		if err := json.Unmarshal(req.Object, &o); err != nil {
			return nil, fmt.Errorf("create body: %w", errClusterInvalid)
		}
		if req.Namespace != "" {
			metaOf(o)["namespace"] = req.Namespace
		}
		out, err = c.create(req.Resource, o, false)
	case hostapi.VerbUpdate, hostapi.VerbPatch:
		out, err = c.change(req, key)
	case hostapi.VerbDelete:
		out, err = c.delete(req, key)
	default:
		err = errClusterInvalid
	}
	if err != nil || out == nil {
		return nil, err
	}
	return json.Marshal(out)
}

func (c *Cluster) change(req hostapi.WriteRequest, key string) (map[string]any, error) {
	cur := c.objs[req.Resource][key]
	if cur == nil {
		return nil, fmt.Errorf("%s %s: %w", req.Resource, key, errClusterNotFound)
	}
	doc, _ := json.Marshal(cur)
	var next []byte
	var err error
	switch {
	case req.Verb == hostapi.VerbUpdate:
		next = req.Object
	case req.PatchType == hostapi.PatchJSON:
		var p jsonpatch.Patch
		if p, err = jsonpatch.DecodePatch(req.Object); err == nil {
			next, err = p.Apply(doc)
		}
	default:
		next, err = jsonpatch.MergePatch(doc, req.Object)
	}
	if err != nil {
		return nil, fmt.Errorf("patch: %w: %v", errClusterInvalid, err)
	}
	var o map[string]any
	if err := json.Unmarshal(next, &o); err != nil {
		return nil, fmt.Errorf("result: %w", errClusterInvalid)
	}
	m, cm := metaOf(o), metaOf(cur)
	if rv := str(m["resourceVersion"]); rv != "" && rv != str(cm["resourceVersion"]) {
		return nil, fmt.Errorf("%s %s: resourceVersion %s is not %s: %w", req.Resource, key, rv, cm["resourceVersion"], errClusterConflict)
	}
	if m["uid"] != nil && m["uid"] != cm["uid"] {
		return nil, fmt.Errorf("%s %s: uid precondition: %w", req.Resource, key, errClusterConflict)
	}
	for _, f := range []string{"uid", "creationTimestamp", "generation", "deletionTimestamp"} {
		if m[f] == nil && cm[f] != nil {
			m[f] = cm[f]
		}
	}
	switch req.Subresource {
	case "status":
		st := o["status"]
		o = clone(cur)
		o["status"] = st
	case "":
		o["status"] = cur["status"]
		if !reflect.DeepEqual(o["spec"], cur["spec"]) && cm["generation"] != nil {
			g, _ := cm["generation"].(float64)
			if gi, ok := cm["generation"].(int); ok {
				g = float64(gi)
			}
			metaOf(o)["generation"] = g + 1
		}
	}
	m = metaOf(o)
	c.rv++
	m["resourceVersion"] = strconv.FormatInt(c.rv, 10)
	if m["deletionTimestamp"] != nil && len(anySlice(m["finalizers"])) == 0 {
		delete(c.objs[req.Resource], key)
		return clone(o), nil
	}
	c.objs[req.Resource][key] = o
	return clone(o), nil
}

func anySlice(v any) []any { s, _ := v.([]any); return s }

func (c *Cluster) delete(req hostapi.WriteRequest, key string) (map[string]any, error) {
	cur := c.objs[req.Resource][key]
	if cur == nil {
		return nil, fmt.Errorf("%s %s: %w", req.Resource, key, errClusterNotFound)
	}
	var opts struct {
		PropagationPolicy string `json:"propagationPolicy"`
		Preconditions     struct {
			UID             string `json:"uid"`
			ResourceVersion string `json:"resourceVersion"`
		} `json:"preconditions"`
	}
	if len(req.Object) > 0 {
		if err := json.Unmarshal(req.Object, &opts); err != nil {
			return nil, fmt.Errorf("delete options: %w", errClusterInvalid)
		}
	}
	m := metaOf(cur)
	if u := opts.Preconditions.UID; u != "" && u != str(m["uid"]) {
		return nil, fmt.Errorf("%s %s: uid precondition: %w", req.Resource, key, errClusterConflict)
	}
	fins := anySlice(m["finalizers"])
	switch opts.PropagationPolicy {
	case "Orphan":
		fins = append(fins, "orphan")
	case "Foreground":
		fins = append(fins, "foregroundDeletion")
	}
	if len(fins) == 0 {
		delete(c.objs[req.Resource], key)
		return nil, nil
	}
	m["finalizers"] = fins
	if m["deletionTimestamp"] == nil {
		m["deletionTimestamp"] = c.now.Format(time.RFC3339)
	}
	c.rv++
	m["resourceVersion"] = strconv.FormatInt(c.rv, 10)
	return clone(cur), nil
}

// read serves Get and List.
func (c *Cluster) get(req hostapi.GetRequest) ([]byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	o := c.objs[req.Resource][req.Namespace+"/"+req.Name]
	if o == nil {
		return nil, fmt.Errorf("%s %s/%s: %w", req.Resource, req.Namespace, req.Name, errClusterNotFound)
	}
	return json.Marshal(o)
}

func (c *Cluster) list(req hostapi.ListRequest) ([][]byte, error) {
	sel, err := labels.Parse(req.LabelSelector)
	if err != nil {
		return nil, fmt.Errorf("label selector: %w", errClusterInvalid)
	}
	fields := map[string]string{}
	for _, term := range strings.Split(req.FieldSelector, ",") {
		if term = strings.TrimSpace(term); term == "" {
			continue
		}
		k, v, ok := strings.Cut(term, "=")
		if !ok {
			return nil, fmt.Errorf("field selector %q: %w", req.FieldSelector, errClusterInvalid)
		}
		fields[strings.TrimSuffix(k, "=")] = strings.TrimPrefix(v, "=")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	resources := []string{req.Resource}
	if req.Resource == hostapi.AllResources {
		if _, ok := fields[hostapi.FieldOwnerUID]; !ok {
			return nil, fmt.Errorf("list of all resources without an owner selector: %w", errClusterInvalid)
		}
		resources = slices.Sorted(maps.Keys(c.objs))
	}
	var out [][]byte
	for _, res := range resources {
		for _, k := range slices.Sorted(maps.Keys(c.objs[res])) {
			o := c.objs[res][k]
			m := metaOf(o)
			if req.Namespace != "" && str(m["namespace"]) != req.Namespace {
				continue
			}
			if v, ok := fields["metadata.name"]; ok && str(m["name"]) != v {
				continue
			}
			if v, ok := fields["metadata.namespace"]; ok && str(m["namespace"]) != v {
				continue
			}
			if uid, ok := fields[hostapi.FieldOwnerUID]; ok && !ownedBy(m, uid) {
				continue
			}
			if !fieldsMatch(o, fields) {
				continue
			}
			ls := labels.Set{}
			lm, _ := m["labels"].(map[string]any)
			for lk, lv := range lm {
				ls[lk] = str(lv)
			}
			if !sel.Matches(ls) {
				continue
			}
			b, _ := json.Marshal(o)
			out = append(out, b)
		}
	}
	return out, nil
}

// fieldsMatch compares the other field selector terms ("spec.nodeName=x")
// with the object's string fields.
func fieldsMatch(o map[string]any, fields map[string]string) bool {
	for k, v := range fields {
		if k == hostapi.FieldOwnerUID {
			continue
		}
		if str(Path(o, strings.Split(k, ".")...)) != v {
			return false
		}
	}
	return true
}

func ownedBy(m map[string]any, uid string) bool {
	for _, r := range anySlice(m["ownerReferences"]) {
		if rm, ok := r.(map[string]any); ok && str(rm["uid"]) == uid {
			return true
		}
	}
	return false
}

// clusterHost adapts a Cluster to sdk.Host, checking the manifest's rules.
type clusterHost struct {
	c      *Cluster
	rules  []hostapi.Rule
	grants []string
}

func (h clusterHost) Log(level sdk.Level, msg string) {
	h.c.mu.Lock()
	defer h.c.mu.Unlock()
	h.c.logs = append(h.c.logs, msg)
}

func (h clusterHost) Get(req sdk.GetRequest) ([]byte, error) {
	if !allows(h.rules, hostapi.VerbGet, req.Resource) {
		return nil, sdk.ErrPermission
	}
	b, err := h.c.get(req)
	return b, clusterError(err)
}

func (h clusterHost) List(req sdk.ListRequest) ([][]byte, error) {
	if !allows(h.rules, hostapi.VerbList, req.Resource) {
		return nil, sdk.ErrPermission
	}
	items, err := h.c.list(req)
	return items, clusterError(err)
}

func (h clusterHost) Write(req sdk.WriteRequest) ([]byte, error) {
	target := req.Resource
	if req.Subresource != "" {
		target += "/" + req.Subresource
	}
	if !allows(h.rules, req.Verb, target) {
		return nil, sdk.ErrPermission
	}
	b, err := h.c.apply(req)
	return b, clusterError(err)
}

func (h clusterHost) Now() (int64, error) {
	if !slices.Contains(h.grants, hostapi.CapClock) {
		return 0, sdk.ErrPermission
	}
	return h.c.Now().UnixNano(), nil
}

func clusterError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, errClusterNotFound):
		return sdk.ErrNotFound
	case errors.Is(err, errClusterConflict):
		return sdk.ErrConflict
	case errors.Is(err, errClusterExists):
		return sdk.ErrAlreadyExists
	case errors.Is(err, errClusterInvalid):
		return sdk.ErrInvalid
	}
	return sdk.ErrInternal
}

// ControllerHarness runs a controller natively against a Cluster, through
// the same bytes path as the Wasm exports (ReconcileRequest JSON -> SDK
// decode -> Reconcile -> ReconcileResult JSON).
type ControllerHarness struct {
	mod     *sdk.Module
	cluster *Cluster
	spec    sdk.ControllerSpec
}

// NewController configures controller r with settings ("" for none) and
// returns a harness whose host calls go to cluster.
func NewController(t testing.TB, r sdk.Reconciler, m sdk.Manifest, spec sdk.ControllerSpec, settings string, cluster *Cluster) *ControllerHarness {
	t.Helper()
	mod, err := sdk.NewController(r, m, spec)
	if err != nil {
		t.Fatalf("plugintest: %v", err)
	}
	h := &ControllerHarness{mod: mod, cluster: cluster, spec: spec}
	if err := mod.Configure(settingsJSON(settings)); err != nil {
		t.Fatalf("plugintest: configure %s: %v", m.Name, err)
	}
	return h
}

// Reconcile reconciles one key and returns the result; a result error
// (the controller's own) comes back in ReconcileResult.Error.
func (h *ControllerHarness) Reconcile(t testing.TB, resource, namespace, name string) sdk.ReconcileResult {
	t.Helper()
	in := sdk.AppendReconcileRequest(nil, sdk.ReconcileRequest{Resource: resource, Namespace: namespace, Name: name})
	var out []byte
	var err error
	m := h.mod.Manifest()
	hostMu.Lock()
	prev := sdk.SetHost(clusterHost{c: h.cluster, rules: m.Rules, grants: m.Grants})
	func() {
		defer sdk.SetHost(prev)
		out, err = h.mod.Call(hostapi.ExportReconcile, in)
	}()
	hostMu.Unlock()
	if err != nil {
		t.Fatalf("plugintest: reconcile: %v", err)
	}
	var res sdk.ReconcileResult
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("plugintest: reconcile result %s: %v", out, err)
	}
	return res
}

// Converge reconciles every object of the controller's primary resources
// (Enqueue self or gc) in rounds until a round makes no write, at most
// rounds times, and returns the number of rounds that wrote. A result
// error fails the test unless allowErrors.
func (h *ControllerHarness) Converge(t testing.TB, rounds int, allowErrors bool) int {
	t.Helper()
	for i := range rounds {
		before := len(h.cluster.Writes())
		for _, w := range h.spec.Watches {
			if w.Enqueue != hostapi.EnqueueSelf && w.Enqueue != hostapi.EnqueueGC {
				continue
			}
			for _, o := range h.cluster.List(w.Resource, "") {
				m := metaOf(o)
				res := h.Reconcile(t, w.Resource, str(m["namespace"]), str(m["name"]))
				if res.Error != "" && !allowErrors {
					t.Fatalf("plugintest: reconcile %s %s/%s: %s", w.Resource, m["namespace"], m["name"], res.Error)
				}
			}
		}
		if len(h.cluster.Writes()) == before {
			return i
		}
	}
	t.Fatalf("plugintest: no convergence after %d rounds", rounds)
	return rounds
}
