// Package hpa is the HorizontalPodAutoscaler controller (autoscaling/v2):
// every sync period it reads the pods of the scale target, computes the
// replicas each Resource metric asks for with Kubernetes' algorithm
// (desired = ceil(current pods × usage / target), tolerance 0.1, missing
// and unready pods handled as Kubernetes does), takes the largest,
// stabilises it (scale-down window 300 s unless spec.behavior says
// otherwise, scale-up window 0), clamps it to min/maxReplicas, writes the
// target's scale subresource, and writes status (currentReplicas,
// desiredReplicas, lastScaleTime, currentMetrics, conditions AbleToScale,
// ScalingActive, ScalingLimited). Behavior policies (rate limits) are not
// applied.
//
// Metrics: pod usage comes from the resource metrics API
// (pods.metrics.k8s.io, PodMetrics: the sum of the containers' usage),
// which the server serves from the nodes' stats summaries (CPU as the rate
// between two scrapes, like metrics-server). A pod without PodMetrics
// falls back to the annotation metrics.tugboat.dev/<resource>-usage (e.g.
// metrics.tugboat.dev/cpu-usage: "250m"), the test source kept for
// servers without metrics (metrics.enabled=false): PodMetrics take
// precedence. Simulated nodes report that annotation as their pods'
// usage, so with metrics on there is one source for them too. CPU samples
// from PodMetrics follow Kubernetes' initialization rule (cpuUnready).
package hpa

import (
	"errors"
	"strconv"
	"time"

	"github.com/tugboat-dev/tugboat/hostapi"
	"github.com/tugboat-dev/tugboat/plugins/controllers/internal/kube"
	"github.com/tugboat-dev/tugboat/sdk"
	"github.com/tugboat-dev/tugboat/sdk/rawjson"
)

// HPAs is the reconciled resource.
const HPAs = "horizontalpodautoscalers.autoscaling"

// PodMetrics is the resource metrics API's pod resource.
const PodMetrics = "pods.metrics.k8s.io"

// UsageAnnotationPrefix + "<resource>-usage" is the pod annotation with
// the pod's current usage of a resource (a quantity).
const UsageAnnotationPrefix = "metrics.tugboat.dev/"

// Defaults of the settings.
const (
	DefaultSyncPeriod             = 15 * time.Second
	DefaultTolerance              = 0.1
	DefaultDownscaleStabilization = 5 * time.Minute
)

// targets maps scaleTargetRef kinds to resources.
var targets = map[string]string{
	"Deployment": "deployments.apps", "ReplicaSet": "replicasets.apps", "StatefulSet": "statefulsets.apps",
	"ReplicationController": "replicationcontrollers",
}

// Manifest is the plugin's manifest.
func Manifest() sdk.Manifest {
	return sdk.Manifest{
		Name:  "hpa",
		Kinds: []string{sdk.KindController},
		Rules: []sdk.Rule{
			{Verbs: []string{"get", "list"}, Resources: []string{HPAs, "pods", PodMetrics, "deployments.apps", "replicasets.apps", "statefulsets.apps", "replicationcontrollers"}},
			{Verbs: []string{"patch", "update"}, Resources: []string{HPAs, HPAs + "/status"}},
			{Verbs: []string{"patch"}, Resources: []string{"deployments.apps/scale", "replicasets.apps/scale", "statefulsets.apps/scale", "replicationcontrollers/scale"}},
			{Verbs: []string{"create"}, Resources: []string{"events"}},
		},
		Grants: []string{hostapi.CapClock},
	}
}

// Spec is the plugin's controller spec: HPAs sync on their own period
// (RequeueAfterMillis); pods and targets are only cached.
func Spec() sdk.ControllerSpec {
	return sdk.ControllerSpec{Watches: []sdk.Watch{
		{Resource: HPAs, Enqueue: hostapi.EnqueueSelf},
		{Resource: "pods", Enqueue: hostapi.EnqueueNone},
		{Resource: "deployments.apps", Enqueue: hostapi.EnqueueNone},
		{Resource: "replicasets.apps", Enqueue: hostapi.EnqueueNone},
		{Resource: "statefulsets.apps", Enqueue: hostapi.EnqueueNone},
	}}
}

// Controller reconciles HPAs. Settings (all optional): {"syncPeriod":
// "15s", "downscaleStabilization": "5m", "tolerance": 0.1}, like
// kube-controller-manager's --horizontal-pod-autoscaler-* flags.
type Controller struct {
	SyncPeriod, DownscaleStabilization time.Duration
	Tolerance                          float64
	// Now is the clock (sdk.Now by default; tests set it).
	Now func() time.Time
}

// New returns the controller with the default settings.
func New() *Controller {
	return &Controller{SyncPeriod: DefaultSyncPeriod, DownscaleStabilization: DefaultDownscaleStabilization, Tolerance: DefaultTolerance}
}

// Configure reads the settings.
func (c *Controller) Configure(settings rawjson.Value) error {
	for key, dst := range map[string]*time.Duration{"syncPeriod": &c.SyncPeriod, "downscaleStabilization": &c.DownscaleStabilization} {
		v, ok := settings.Get(key)
		if !ok {
			continue
		}
		s, _ := v.String()
		d, err := time.ParseDuration(s)
		if err != nil || d < 0 || (key == "syncPeriod" && d == 0) {
			return errors.New(`settings: "` + key + `" must be a duration like "15s"`)
		}
		*dst = d
	}
	if v, ok := settings.Get("tolerance"); ok {
		f, ok := v.Float()
		if !ok || f < 0 || f >= 1 {
			return errors.New(`settings: "tolerance" must be a number in [0, 1)`)
		}
		c.Tolerance = f
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

// metricStatus is one entry of status.currentMetrics.
type metricStatus struct {
	name                      string
	utilization, averageValue int64 // utilization < 0: not a utilization target
}

type condition struct{ typ, status, reason, message string }

// outcome is what one sync decided.
type outcome struct {
	current, desired int64
	scaled           bool
	metrics          []metricStatus
	conds            []condition
}

// Reconcile syncs one HPA.
func (c *Controller) Reconcile(req sdk.ReconcileRequest) (sdk.ReconcileResult, error) {
	obj, err := sdk.Get(HPAs, req.Namespace, req.Name)
	if errors.Is(err, sdk.ErrNotFound) {
		return sdk.ReconcileResult{}, nil
	}
	if err != nil {
		return sdk.ReconcileResult{}, err
	}
	meta := kube.ReadMeta(obj)
	if meta.Deleting {
		return sdk.ReconcileResult{}, nil
	}
	result := sdk.ReconcileResult{RequeueAfterMillis: c.SyncPeriod.Milliseconds()}
	now := c.now()
	out, err := c.sync(obj, &meta, now)
	if err != nil {
		return result, err
	}
	return result, writeStatus(obj, &meta, out, now)
}

// sync computes and applies the desired replicas.
func (c *Controller) sync(obj rawjson.Value, meta *kube.Meta, now time.Time) (*outcome, error) {
	kind, name := kube.Str(obj, "spec", "scaleTargetRef", "kind"), kube.Str(obj, "spec", "scaleTargetRef", "name")
	res, ok := targets[kind]
	out := &outcome{}
	if !ok {
		out.conds = append(out.conds, condition{"AbleToScale", "False", "FailedGetScale", "the HPA controller cannot scale a " + kind})
		return out, nil
	}
	target, err := sdk.Get(res, meta.Namespace, name)
	if errors.Is(err, sdk.ErrNotFound) {
		out.conds = append(out.conds, condition{"AbleToScale", "False", "FailedGetScale", kind + " " + name + " not found"})
		return out, nil
	}
	if err != nil {
		return nil, err
	}
	out.current = kube.Int(target, 1, "spec", "replicas")
	minR, maxR := kube.Int(obj, 1, "spec", "minReplicas"), kube.Int(obj, 1, "spec", "maxReplicas")
	out.conds = append(out.conds, condition{"AbleToScale", "True", "ReadyForNewScale", "recommended size matches current size"})
	desired := out.current
	switch {
	case out.current == 0 && minR != 0:
		out.conds = append(out.conds, condition{"ScalingActive", "False", "ScalingDisabled", "scaling is disabled since the replica count of the target is zero"})
		out.desired = 0
		return out, nil
	case out.current > maxR:
		desired = maxR
		out.conds = append(out.conds, condition{"ScalingActive", "True", "ValidMetricFound", "the current number of replicas is above maxReplicas"})
	case out.current < minR:
		desired = minR
		out.conds = append(out.conds, condition{"ScalingActive", "True", "ValidMetricFound", "the current number of replicas is below minReplicas"})
	default:
		proposal, cond, err := c.proposal(obj, target, meta.Namespace, kind, out, now)
		if err != nil {
			return nil, err
		}
		out.conds = append(out.conds, cond)
		if cond.status != "True" {
			out.desired = out.current
			return out, nil
		}
		recs := parseRecommendations(meta.Annotations[RecommendationsAnnotation])
		stable, kept := stabilize(recs, out.current, proposal, now, c.window(obj, "scaleUp", 0), c.window(obj, "scaleDown", c.DownscaleStabilization))
		if s := formatRecommendations(kept); s != meta.Annotations[RecommendationsAnnotation] {
			patch := []byte(`{"metadata":{"annotations":{`)
			patch = rawjson.AppendString(patch, RecommendationsAnnotation)
			patch = append(patch, ':')
			patch = rawjson.AppendString(patch, s)
			patch = append(patch, "}}}"...)
			if _, err := sdk.MergePatch(HPAs, meta.Namespace, meta.Name, "", patch); err != nil && !errors.Is(err, sdk.ErrNotFound) {
				return nil, err
			}
		}
		desired = stable
		switch {
		case desired > maxR:
			desired = maxR
			out.conds = append(out.conds, condition{"ScalingLimited", "True", "TooManyReplicas", "the desired replica count is more than the maximum replica count"})
		case desired < minR:
			desired = minR
			out.conds = append(out.conds, condition{"ScalingLimited", "True", "TooFewReplicas", "the desired replica count is less than the minimum replica count"})
		default:
			out.conds = append(out.conds, condition{"ScalingLimited", "False", "DesiredWithinRange", "the desired count is within the acceptable range"})
		}
	}
	out.desired = desired
	if desired != out.current {
		patch := []byte(`{"spec":{"replicas":`)
		patch = strconv.AppendInt(patch, desired, 10)
		patch = append(patch, "}}"...)
		if _, err := sdk.MergePatch(targets[kind], meta.Namespace, name, "scale", patch); err != nil {
			out.conds[0] = condition{"AbleToScale", "False", "FailedUpdateScale", "the HPA controller was unable to update the target scale: " + err.Error()}
			return out, nil
		}
		out.scaled = true
		out.conds[0] = condition{"AbleToScale", "True", "SucceededRescale", "the HPA controller was able to update the target scale to " + strconv.FormatInt(desired, 10)}
		event(meta, "SuccessfulRescale", "New size: "+strconv.FormatInt(desired, 10), now)
	}
	return out, nil
}

// window is a behavior's stabilizationWindowSeconds, or def.
func (c *Controller) window(obj rawjson.Value, dir string, def time.Duration) time.Duration {
	v, ok := obj.Get("spec", "behavior", dir, "stabilizationWindowSeconds")
	if !ok || v.IsNull() {
		return def
	}
	n, _ := v.Int()
	return time.Duration(n) * time.Second
}

// proposal is the largest replica count the Resource metrics ask for.
func (c *Controller) proposal(obj, target rawjson.Value, ns, kind string, out *outcome, now time.Time) (int64, condition, error) {
	var sel kube.Selector
	var err error
	if kind == "ReplicationController" {
		sel = kube.MapSelector(kube.StringMap(mustGet(target, "spec", "selector")))
	} else {
		v, ok := target.Get("spec", "selector")
		if sel, err = kube.LabelSelector(v, ok); err != nil {
			return 0, condition{"ScalingActive", "False", "InvalidSelector", "the target's selector is invalid"}, nil
		}
	}
	if !sel.Valid() {
		return 0, condition{"ScalingActive", "False", "InvalidSelector", "the target has no selector"}, nil
	}
	pods, err := sdk.List(sdk.ListRequest{Resource: "pods", Namespace: ns, LabelSelector: sel.String()})
	if err != nil {
		return 0, condition{}, err
	}
	usage := podUsage(ns, sel.String())
	best := int64(-1)
	why := "no Resource metric in spec.metrics"
	metrics, _ := obj.Get("spec", "metrics")
	for _, m := range metrics.Elems() {
		if kube.Str(m, "type") != "Resource" {
			continue
		}
		name := kube.Str(m, "resource", "name")
		var t Target
		switch kube.Str(m, "resource", "target", "type") {
		case "Utilization":
			t.Utilization = kube.Int(m, 0, "resource", "target", "averageUtilization")
		case "AverageValue":
			t.AverageValue, _ = ParseMilli(kube.Str(m, "resource", "target", "averageValue"))
		}
		if t.Utilization <= 0 && t.AverageValue <= 0 {
			why = "invalid target of metric " + name
			continue
		}
		pm, missingRequest := podMetrics(pods, usage, name, now)
		if missingRequest && t.Utilization > 0 {
			why = "missing request for " + name
			continue
		}
		calc, ok := Replicas(out.current, pm, t, c.Tolerance)
		if !ok {
			why = "no " + name + " usage reported for the pods of the target (metrics.k8s.io, or the annotation " + UsageAnnotationPrefix + name + "-usage)"
			continue
		}
		ms := metricStatus{name: name, utilization: -1, averageValue: calc.AverageValue}
		if t.Utilization > 0 {
			ms.utilization = calc.Utilization
		}
		out.metrics = append(out.metrics, ms)
		best = max(best, calc.Replicas)
	}
	if best < 0 {
		return 0, condition{"ScalingActive", "False", "FailedGetResourceMetric", why}, nil
	}
	return best, condition{"ScalingActive", "True", "ValidMetricFound", "the HPA was able to successfully calculate a replica count"}, nil
}

// Kubernetes' defaults of --horizontal-pod-autoscaler-cpu-initialization-period
// and --horizontal-pod-autoscaler-initial-readiness-delay.
const (
	cpuInitializationPeriod = 5 * time.Minute
	initialReadinessDelay   = 30 * time.Second
)

// usage is one pod's PodMetrics: usage by resource (milli-units, summed
// over the containers), and the sample's end and length.
type usage struct {
	milli  map[string]int64
	at     time.Time
	window time.Duration
}

// podUsage reads the PodMetrics of the pods matching selector in ns, by
// pod name. Without the metrics API (or on an error) it is empty: the
// annotation source is used.
func podUsage(ns, selector string) map[string]usage {
	items, err := sdk.List(sdk.ListRequest{Resource: PodMetrics, Namespace: ns, LabelSelector: selector})
	if err != nil {
		return nil
	}
	out := make(map[string]usage, len(items))
	for _, pm := range items {
		u := usage{milli: map[string]int64{}, at: kube.Time(mustGet(pm, "timestamp"))}
		u.window, _ = time.ParseDuration(kube.Str(pm, "window"))
		cs, _ := pm.Get("containers")
		for _, c := range cs.Elems() {
			cu, _ := c.Get("usage")
			for _, res := range []string{"cpu", "memory"} {
				if q := kube.Str(cu, res); q != "" {
					if v, ok := ParseMilli(q); ok {
						u.milli[res] += v
					}
				}
			}
		}
		out[kube.Str(pm, "metadata", "name")] = u
	}
	return out
}

// cpuUnready is Kubernetes' rule for a CPU sample: within the CPU
// initialization period after the pod started, the sample counts only if
// the pod is ready and the sample's window began after it became ready
// (startup bursts are not load); later, only a pod that has never been
// ready is unready.
func cpuUnready(p *kube.Pod, u usage, now time.Time) bool {
	start := kube.Time(mustGet(p.Raw, "status", "startTime"))
	if start.IsZero() || p.ReadySince.IsZero() && !p.Ready {
		return true
	}
	if start.Add(cpuInitializationPeriod).After(now) {
		return !p.Ready || u.at.Before(p.ReadySince.Add(u.window))
	}
	return !p.Ready && start.Add(initialReadinessDelay).After(p.ReadySince)
}

// podMetrics reads the pods' usage (PodMetrics, else the annotation) and
// requests of resource; terminated and deleted pods are left out.
func podMetrics(pods []rawjson.Value, usage map[string]usage, resource string, now time.Time) (out []podMetric, missingRequest bool) {
	for _, raw := range pods {
		p := kube.ReadPod(raw)
		if p.Meta.Deleting || p.Phase == "Failed" || p.Phase == "Succeeded" {
			continue
		}
		var pm podMetric
		pm.ready = p.Phase == "Running" && p.Ready
		u, measured := usage[p.Meta.Name]
		if v, ok := u.milli[resource]; measured && ok {
			pm.usage, pm.hasUsage = v, true
			if resource == "cpu" {
				pm.ready = p.Phase == "Running" && !cpuUnready(&p, u, now)
			}
		} else if s, ok := p.Meta.Annotations[UsageAnnotationPrefix+resource+"-usage"]; ok {
			pm.usage, pm.hasUsage = ParseMilli(s)
		}
		cs, _ := raw.Get("spec", "containers")
		for _, ctr := range cs.Elems() {
			q := kube.Str(ctr, "resources", "requests", resource)
			if q == "" {
				missingRequest = true
				continue
			}
			v, _ := ParseMilli(q)
			pm.request += v
		}
		out = append(out, pm)
	}
	return out, missingRequest
}

// writeStatus patches the status if it changed.
func writeStatus(obj rawjson.Value, meta *kube.Meta, out *outcome, now time.Time) error {
	lastScale := kube.Str(obj, "status", "lastScaleTime")
	if out.scaled {
		lastScale = kube.FormatTime(now)
	}
	old := map[string]condition{}
	oldTimes := map[string]string{}
	conds, _ := obj.Get("status", "conditions")
	for _, cd := range conds.Elems() {
		typ := kube.Str(cd, "type")
		old[typ] = condition{typ, kube.Str(cd, "status"), kube.Str(cd, "reason"), kube.Str(cd, "message")}
		oldTimes[typ] = kube.Str(cd, "lastTransitionTime")
	}
	var oldMetrics []metricStatus
	cms, _ := obj.Get("status", "currentMetrics")
	for _, m := range cms.Elems() {
		v, _ := ParseMilli(kube.Str(m, "resource", "current", "averageValue"))
		oldMetrics = append(oldMetrics, metricStatus{kube.Str(m, "resource", "name"), kube.Int(m, -1, "resource", "current", "averageUtilization"), v})
	}
	changed := kube.Int(obj, 0, "status", "currentReplicas") != out.current || kube.Int(obj, 0, "status", "desiredReplicas") != out.desired ||
		out.scaled || len(old) != len(out.conds) || len(oldMetrics) != len(out.metrics) || kube.Int(obj, 0, "status", "observedGeneration") != meta.Generation
	for i := range out.metrics {
		if i < len(oldMetrics) && oldMetrics[i] != out.metrics[i] {
			changed = true
		}
	}
	b := []byte(`{"status":{"observedGeneration":`)
	b = strconv.AppendInt(b, meta.Generation, 10)
	b = append(b, `,"currentReplicas":`...)
	b = strconv.AppendInt(b, out.current, 10)
	b = append(b, `,"desiredReplicas":`...)
	b = strconv.AppendInt(b, out.desired, 10)
	if lastScale != "" {
		b = append(b, `,"lastScaleTime":`...)
		b = rawjson.AppendString(b, lastScale)
	}
	b = append(b, `,"currentMetrics":`...)
	if len(out.metrics) == 0 {
		b = append(b, "null"...)
	} else {
		b = append(b, '[')
		for i, m := range out.metrics {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"type":"Resource","resource":{"name":`...)
			b = rawjson.AppendString(b, m.name)
			b = append(b, `,"current":{"averageValue":`...)
			b = rawjson.AppendString(b, FormatMilli(m.averageValue))
			if m.utilization >= 0 {
				b = append(b, `,"averageUtilization":`...)
				b = strconv.AppendInt(b, m.utilization, 10)
			}
			b = append(b, "}}}"...)
		}
		b = append(b, ']')
	}
	b = append(b, `,"conditions":[`...)
	for i, cd := range out.conds {
		if o, ok := old[cd.typ]; !ok || o != cd {
			changed = true
		}
		at := kube.FormatTime(now)
		if o, ok := old[cd.typ]; ok && o.status == cd.status && oldTimes[cd.typ] != "" {
			at = oldTimes[cd.typ]
		}
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"type":`...)
		b = rawjson.AppendString(b, cd.typ)
		b = append(b, `,"status":`...)
		b = rawjson.AppendString(b, cd.status)
		b = append(b, `,"reason":`...)
		b = rawjson.AppendString(b, cd.reason)
		b = append(b, `,"message":`...)
		b = rawjson.AppendString(b, cd.message)
		b = append(b, `,"lastTransitionTime":`...)
		b = rawjson.AppendString(b, at)
		b = append(b, '}')
	}
	b = append(b, "]}}"...)
	if !changed {
		return nil
	}
	_, err := sdk.MergePatch(HPAs, meta.Namespace, meta.Name, "status", b)
	if errors.Is(err, sdk.ErrNotFound) {
		return nil
	}
	return err
}

// event records an event about the HPA (best effort).
func event(meta *kube.Meta, reason, message string, now time.Time) {
	kube.RecordEvent(kube.Involved{APIVersion: "autoscaling/v2", Kind: "HorizontalPodAutoscaler", Meta: meta},
		"horizontal-pod-autoscaler", "Normal", reason, message, now)
}

func mustGet(v rawjson.Value, path ...string) rawjson.Value {
	out, _ := v.Get(path...)
	return out
}
