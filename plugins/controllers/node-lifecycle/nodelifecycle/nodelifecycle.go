// Package nodelifecycle is the node lifecycle controller: a Node whose
// Lease (kube-node-lease/<name>) has not been renewed for the grace
// period gets its conditions set to Unknown and the
// node.kubernetes.io/unreachable NoSchedule and NoExecute taints; a Node
// whose agent reports Ready=False (its Lease still renewed) gets the
// node.kubernetes.io/not-ready NoSchedule and NoExecute taints instead,
// as Kubernetes' taint-based eviction does (one of the two keys at a
// time: a not-ready node that stops renewing becomes unreachable). Pods
// on it that do not tolerate the NoExecute taint are deleted once their
// tolerationSeconds (default: the eviction timeout, like Kubernetes'
// DefaultTolerationSeconds admission) have passed since the taint was
// added, so their controllers replace them elsewhere. When the node is
// healthy again (Lease renewed, Ready not False) the taints are removed.
package nodelifecycle

import (
	"errors"
	"strconv"
	"time"

	"github.com/tugboat-dev/tugboat/hostapi"
	"github.com/tugboat-dev/tugboat/plugins/controllers/internal/kube"
	"github.com/tugboat-dev/tugboat/sdk"
	"github.com/tugboat-dev/tugboat/sdk/rawjson"
)

// Resources, the lease namespace and the taint.
const (
	Nodes          = "nodes"
	Leases         = "leases.coordination.k8s.io"
	LeaseNamespace = "kube-node-lease"
	TaintKey       = "node.kubernetes.io/unreachable"
	// NotReadyTaintKey is the taint of a node reporting Ready=False.
	NotReadyTaintKey = "node.kubernetes.io/not-ready"
)

// Defaults of the settings.
const (
	DefaultGracePeriod     = 40 * time.Second
	DefaultEvictionTimeout = 300 * time.Second
)

// Manifest is the plugin's manifest.
func Manifest() sdk.Manifest {
	return sdk.Manifest{
		Name:  "node-lifecycle",
		Kinds: []string{sdk.KindController},
		Rules: []sdk.Rule{
			{Verbs: []string{"get", "list"}, Resources: []string{Nodes, Leases, "pods"}},
			{Verbs: []string{"patch"}, Resources: []string{Nodes, Nodes + "/status"}},
			{Verbs: []string{"delete"}, Resources: []string{"pods"}},
		},
		Grants: []string{hostapi.CapClock},
	}
}

// Spec is the plugin's controller spec.
func Spec() sdk.ControllerSpec {
	return sdk.ControllerSpec{Watches: []sdk.Watch{
		{Resource: Nodes, Enqueue: hostapi.EnqueueSelf},
		{Resource: Leases, Enqueue: hostapi.EnqueueName},
	}}
}

// Controller watches node heartbeats. Settings (all optional):
// {"gracePeriod": "40s", "evictionTimeout": "300s"}.
type Controller struct {
	Grace, Eviction time.Duration
	// Now is the clock (sdk.Now by default; tests set it).
	Now func() time.Time
}

// New returns the controller with the default timings.
func New() *Controller {
	return &Controller{Grace: DefaultGracePeriod, Eviction: DefaultEvictionTimeout}
}

// Configure reads the settings.
func (c *Controller) Configure(settings rawjson.Value) error {
	for key, dst := range map[string]*time.Duration{"gracePeriod": &c.Grace, "evictionTimeout": &c.Eviction} {
		v, ok := settings.Get(key)
		if !ok {
			continue
		}
		s, _ := v.String()
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			return errors.New(`settings: "` + key + `" must be a positive duration like "40s"`)
		}
		*dst = d
	}
	return nil
}

func (c *Controller) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	t, err := sdk.Now()
	if err != nil {
		return time.Now()
	}
	return t
}

// taint is one spec.taints entry.
type taint struct{ key, value, effect, timeAdded string }

// Reconcile checks one node's heartbeat.
func (c *Controller) Reconcile(req sdk.ReconcileRequest) (sdk.ReconcileResult, error) {
	if req.Resource != Nodes {
		return sdk.ReconcileResult{}, nil
	}
	node, err := sdk.Get(Nodes, "", req.Name)
	if errors.Is(err, sdk.ErrNotFound) {
		return sdk.ReconcileResult{}, nil
	}
	if err != nil {
		return sdk.ReconcileResult{}, err
	}
	meta := kube.ReadMeta(node)
	renewed := meta.Created
	if lease, err := sdk.Get(Leases, LeaseNamespace, req.Name); err == nil {
		for _, f := range []string{"renewTime", "acquireTime"} {
			if t := kube.Time(mustGet(lease, "spec", f)); !t.IsZero() {
				renewed = t
				break
			}
		}
	} else if !errors.Is(err, sdk.ErrNotFound) {
		return sdk.ReconcileResult{}, err
	}
	now := c.now()
	taints := readTaints(node)
	leaseLeft := renewed.Add(c.Grace).Sub(now)
	stamp := kube.FormatTime(now)
	var key string
	switch {
	case leaseLeft <= 0:
		key = TaintKey
		if err := markUnknown(node, req.Name, stamp); err != nil {
			return sdk.ReconcileResult{}, err
		}
	case readyStatus(node) == "False":
		key = NotReadyTaintKey
	default:
		// Healthy: lift our taints, check again when the lease would expire.
		if len(without(taints)) != len(taints) {
			if err := patchTaints(req.Name, without(taints)); err != nil {
				return sdk.ReconcileResult{}, err
			}
		}
		return sdk.ReconcileResult{RequeueAfterMillis: leaseLeft.Milliseconds() + 1}, nil
	}
	if want := withTaints(taints, key, stamp); !sameTaints(want, taints) {
		taints = want
		if err := patchTaints(req.Name, taints); err != nil {
			return sdk.ReconcileResult{}, err
		}
	}
	var since time.Time
	for _, t := range taints {
		if t.key == key && t.effect == "NoExecute" {
			since = kube.Time(rawjson.Value(strconv.Quote(t.timeAdded)))
		}
	}
	wait, err := c.evict(req.Name, key, since, now)
	if err != nil {
		return sdk.ReconcileResult{}, err
	}
	if leaseLeft > 0 {
		wait = min(wait, leaseLeft)
	}
	return sdk.ReconcileResult{RequeueAfterMillis: wait.Milliseconds() + 1}, nil
}

// readyStatus is the status of the node's Ready condition ("" if none).
func readyStatus(node rawjson.Value) string {
	status := ""
	conds, _ := node.Get("status", "conditions")
	_ = conds.EachElem(func(_ int, c rawjson.Value) bool {
		if kube.Str(c, "type") == "Ready" {
			status = kube.Str(c, "status")
			return false
		}
		return true
	})
	return status
}

// withTaints is ts with the NoSchedule and NoExecute taints of key (kept
// with their timeAdded if present, else added at stamp) and without the
// other key's.
func withTaints(ts []taint, key, stamp string) []taint {
	out := without(ts)
	for _, effect := range []string{"NoSchedule", "NoExecute"} {
		t := taint{key: key, effect: effect, timeAdded: stamp}
		for _, old := range ts {
			if old.key == key && old.effect == effect {
				t = old
			}
		}
		out = append(out, t)
	}
	return out
}

func sameTaints(a, b []taint) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// evict deletes the pods of the node whose toleration of the NoExecute
// taint (added at since) has run out, and returns when to look again.
func (c *Controller) evict(node, key string, since, now time.Time) (time.Duration, error) {
	pods, err := sdk.List(sdk.ListRequest{Resource: "pods", FieldSelector: "spec.nodeName=" + node})
	if err != nil {
		return 0, err
	}
	next := c.Eviction
	for _, raw := range pods {
		p := kube.ReadPod(raw)
		if p.Meta.Deleting || p.Phase == "Succeeded" || p.Phase == "Failed" {
			continue
		}
		tolerate, forever := toleration(raw, key, c.Eviction)
		if forever {
			continue
		}
		left := since.Add(tolerate).Sub(now)
		if left > 0 {
			next = min(next, left)
			continue
		}
		opts := []byte(`{"preconditions":{"uid":`)
		opts = append(rawjson.AppendString(opts, p.Meta.UID), "}}"...)
		if err := sdk.DeleteObject("pods", p.Meta.Namespace, p.Meta.Name, opts); err != nil &&
			!errors.Is(err, sdk.ErrNotFound) && !errors.Is(err, sdk.ErrConflict) {
			return 0, err
		}
	}
	return next, nil
}

// toleration returns how long pod tolerates the NoExecute taint of key:
// its toleration's tolerationSeconds, forever for a toleration without
// seconds, def without a matching toleration.
func toleration(pod rawjson.Value, taintKey string, def time.Duration) (time.Duration, bool) {
	d, forever, found := def, false, false
	tv, _ := pod.Get("spec", "tolerations")
	_ = tv.EachElem(func(_ int, t rawjson.Value) bool {
		key, op, effect := kube.Str(t, "key"), kube.Str(t, "operator"), kube.Str(t, "effect")
		if (key != taintKey && !(key == "" && op == "Exists")) || (effect != "" && effect != "NoExecute") {
			return true
		}
		found = true
		if s, ok := t.Get("tolerationSeconds"); ok && !s.IsNull() {
			n, _ := s.Int()
			d = time.Duration(max(n, 0)) * time.Second
		} else {
			forever = true
		}
		return false
	})
	if !found {
		return def, false
	}
	return d, forever
}

func mustGet(v rawjson.Value, path ...string) rawjson.Value {
	out, _ := v.Get(path...)
	return out
}

func readTaints(node rawjson.Value) []taint {
	var out []taint
	v, _ := node.Get("spec", "taints")
	_ = v.EachElem(func(_ int, t rawjson.Value) bool {
		out = append(out, taint{kube.Str(t, "key"), kube.Str(t, "value"), kube.Str(t, "effect"), kube.Str(t, "timeAdded")})
		return true
	})
	return out
}

// without is ts without the controller's taints (both keys).
func without(ts []taint) []taint {
	var out []taint
	for _, t := range ts {
		if t.key != TaintKey && t.key != NotReadyTaintKey {
			out = append(out, t)
		}
	}
	return out
}

func patchTaints(node string, ts []taint) error {
	b := []byte(`{"spec":{"taints":`)
	if len(ts) == 0 {
		b = append(b, "null"...)
	} else {
		b = append(b, '[')
		for i, t := range ts {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"key":`...)
			b = rawjson.AppendString(b, t.key)
			if t.value != "" {
				b = append(b, `,"value":`...)
				b = rawjson.AppendString(b, t.value)
			}
			b = append(b, `,"effect":`...)
			b = rawjson.AppendString(b, t.effect)
			if t.timeAdded != "" {
				b = append(b, `,"timeAdded":`...)
				b = rawjson.AppendString(b, t.timeAdded)
			}
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	b = append(b, "}}"...)
	_, err := sdk.MergePatch(Nodes, "", node, "", b)
	return err
}

// markUnknown sets every node condition to Unknown (once).
func markUnknown(node rawjson.Value, name, stamp string) error {
	conds, _ := node.Get("status", "conditions")
	changed := false
	b := []byte(`{"status":{"conditions":[`)
	n := 0
	_ = conds.EachElem(func(_ int, c rawjson.Value) bool {
		if n > 0 {
			b = append(b, ',')
		}
		n++
		status := kube.Str(c, "status")
		b = append(b, `{"type":`...)
		b = rawjson.AppendString(b, kube.Str(c, "type"))
		b = append(b, `,"status":"Unknown","lastHeartbeatTime":`...)
		b = rawjson.AppendString(b, kube.Str(c, "lastHeartbeatTime"))
		transition := kube.Str(c, "lastTransitionTime")
		reason, message := kube.Str(c, "reason"), kube.Str(c, "message")
		if status != "Unknown" {
			changed = true
			transition, reason, message = stamp, "NodeStatusUnknown", "Kubelet stopped posting node status."
		}
		b = append(b, `,"lastTransitionTime":`...)
		b = rawjson.AppendString(b, transition)
		b = append(b, `,"reason":`...)
		b = rawjson.AppendString(b, reason)
		b = append(b, `,"message":`...)
		b = rawjson.AppendString(b, message)
		b = append(b, '}')
		return true
	})
	if n == 0 {
		b = append(b, `{"type":"Ready","status":"Unknown","lastTransitionTime":`...)
		b = rawjson.AppendString(b, stamp)
		b = append(b, `,"reason":"NodeStatusNeverUpdated","message":"Kubelet never posted node status."}`...)
		changed = true
	}
	if !changed {
		return nil
	}
	b = append(b, "]}}"...)
	_, err := sdk.MergePatch(Nodes, "", name, "status", b)
	return err
}
