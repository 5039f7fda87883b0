// Package job is the Job controller: it runs pods until spec.completions
// of them succeed, at most spec.parallelism at once (a work queue when
// completions is unset: done when one pod succeeded and none is active),
// fails the Job after more than backoffLimit pod failures or past
// activeDeadlineSeconds, writes status (active, ready, succeeded, failed,
// startTime, completionTime, Complete/Failed conditions) and deletes
// finished Jobs after ttlSecondsAfterFinished.
package job

import (
	"errors"
	"slices"
	"strconv"
	"time"

	"github.com/tugboat-dev/tugboat/hostapi"
	"github.com/tugboat-dev/tugboat/plugins/controllers/internal/kube"
	"github.com/tugboat-dev/tugboat/sdk"
	"github.com/tugboat-dev/tugboat/sdk/rawjson"
)

// Jobs is the reconciled resource.
const Jobs = "jobs.batch"

// Labels the controller puts on a Job's pods.
const (
	ControllerUIDLabel = "batch.kubernetes.io/controller-uid"
	JobNameLabel       = "batch.kubernetes.io/job-name"
	defaultBackoff     = 6
)

// Manifest is the plugin's manifest.
func Manifest() sdk.Manifest {
	return sdk.Manifest{
		Name:  "job",
		Kinds: []string{sdk.KindController},
		Rules: []sdk.Rule{
			{Verbs: []string{"get", "list"}, Resources: []string{Jobs, "pods"}},
			{Verbs: []string{"create", "delete"}, Resources: []string{"pods"}},
			{Verbs: []string{"patch", "update"}, Resources: []string{Jobs + "/status"}},
			{Verbs: []string{"delete"}, Resources: []string{Jobs}},
		},
		Grants: []string{hostapi.CapClock},
	}
}

// Spec is the plugin's controller spec.
func Spec() sdk.ControllerSpec {
	return sdk.ControllerSpec{Watches: []sdk.Watch{
		{Resource: Jobs, Enqueue: hostapi.EnqueueSelf},
		{Resource: "pods", Enqueue: hostapi.EnqueueOwner},
	}}
}

// Controller reconciles Jobs.
type Controller struct {
	// Now is the clock (sdk.Now by default; tests set it).
	Now func() time.Time
}

// New returns the controller.
func New() *Controller { return &Controller{} }

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

// state is what one reconcile counts.
type state struct {
	active                    []kube.Pod
	ready, succeeded, failed  int64
	startTime, completionTime string
	conds                     []condition
	finished                  bool
}

type condition struct{ typ, reason, message, time string }

// Reconcile syncs one Job.
func (c *Controller) Reconcile(req sdk.ReconcileRequest) (sdk.ReconcileResult, error) {
	job, err := sdk.Get(Jobs, req.Namespace, req.Name)
	if errors.Is(err, sdk.ErrNotFound) {
		return sdk.ReconcileResult{}, nil
	}
	if err != nil {
		return sdk.ReconcileResult{}, err
	}
	meta := kube.ReadMeta(job)
	if meta.Deleting {
		return sdk.ReconcileResult{}, nil
	}
	now := c.now()
	st := readStatus(job)
	if st.finished {
		return c.finished(req, job, st, now)
	}
	pods, err := sdk.List(sdk.ListRequest{Resource: "pods", Namespace: req.Namespace, FieldSelector: hostapi.FieldOwnerUID + "=" + meta.UID})
	if err != nil {
		return sdk.ReconcileResult{}, err
	}
	var succeeded, failed int64
	for _, raw := range pods {
		p := kube.ReadPod(raw)
		switch {
		case p.Phase == "Succeeded":
			succeeded++
		case p.Phase == "Failed":
			failed++
		case !p.Meta.Deleting:
			st.active = append(st.active, p)
			if p.Ready {
				st.ready++
			}
		}
	}
	// Pods may be deleted after they finished; the counts never go down.
	st.succeeded, st.failed = max(st.succeeded, succeeded), max(st.failed, failed)
	if st.startTime == "" {
		st.startTime = kube.FormatTime(now)
	}
	var result sdk.ReconcileResult
	parallelism := kube.Int(job, 1, "spec", "parallelism")
	completionsV, hasCompletions := job.Get("spec", "completions")
	completions, _ := completionsV.Int()
	backoff := kube.Int(job, defaultBackoff, "spec", "backoffLimit")
	started := kube.Time(rawjson.Value(strconv.Quote(st.startTime)))
	switch {
	case st.failed > backoff:
		st.fail("BackoffLimitExceeded", "Job has reached the specified backoff limit", now)
	case deadlineExceeded(job, started, now, &result):
		st.fail("DeadlineExceeded", "Job was active longer than specified deadline", now)
	case hasCompletions && !completionsV.IsNull() && st.succeeded >= completions,
		(!hasCompletions || completionsV.IsNull()) && st.succeeded > 0 && len(st.active) == 0:
		st.finished = true
		st.completionTime = kube.FormatTime(now)
		st.conds = append(st.conds, condition{"Complete", "", "", kube.FormatTime(now)})
	default:
		want := parallelism
		if hasCompletions && !completionsV.IsNull() {
			want = min(parallelism, completions-st.succeeded)
		} else if st.succeeded > 0 {
			want = 0
		}
		if err := c.scale(req.Namespace, job, &meta, &st, want); err != nil {
			return result, err
		}
	}
	if st.finished {
		for _, p := range st.active {
			deletePod(req.Namespace, &p)
		}
		st.active, st.ready = nil, 0
	}
	if err := writeStatus(req, job, &st); err != nil {
		return result, err
	}
	if st.finished {
		return c.finished(req, job, st, now)
	}
	return result, nil
}

func (st *state) fail(reason, message string, now time.Time) {
	st.finished = true
	st.conds = append(st.conds, condition{"Failed", reason, message, kube.FormatTime(now)})
}

// deadlineExceeded checks activeDeadlineSeconds; before the deadline it
// asks for a reconcile at the deadline.
func deadlineExceeded(job rawjson.Value, started, now time.Time, res *sdk.ReconcileResult) bool {
	ads := kube.Int(job, 0, "spec", "activeDeadlineSeconds")
	if ads <= 0 || started.IsZero() {
		return false
	}
	left := started.Add(time.Duration(ads) * time.Second).Sub(now)
	if left <= 0 {
		return true
	}
	res.RequeueAfterMillis = left.Milliseconds() + 1
	return false
}

// scale creates or deletes pods so that want are active.
func (c *Controller) scale(ns string, job rawjson.Value, meta *kube.Meta, st *state, want int64) error {
	have := int64(len(st.active))
	if have > want {
		slices.SortFunc(st.active, func(a, b kube.Pod) int {
			switch {
			case kube.DeleteFirst(&a, &b):
				return -1
			case kube.DeleteFirst(&b, &a):
				return 1
			}
			return 0
		})
		for _, p := range st.active[:have-want] {
			deletePod(ns, &p)
		}
		st.active = st.active[have-want:]
		return nil
	}
	body := podBody(ns, job, meta)
	for range want - have {
		out, err := sdk.CreateObject("pods", ns, body)
		if err != nil {
			return err
		}
		st.active = append(st.active, kube.ReadPod(out))
	}
	return nil
}

func deletePod(ns string, p *kube.Pod) {
	opts := []byte(`{"preconditions":{"uid":`)
	opts = append(rawjson.AppendString(opts, p.Meta.UID), "}}"...)
	_ = sdk.DeleteObject("pods", ns, p.Meta.Name, opts)
}

// podBody is a pod of the job's template, labelled and owned by the job.
func podBody(ns string, job rawjson.Value, meta *kube.Meta) []byte {
	labels := kube.StringMap(mustGet(job, "spec", "template", "metadata", "labels"))
	if labels == nil {
		labels = map[string]string{}
	}
	labels[ControllerUIDLabel] = meta.UID
	labels[JobNameLabel] = meta.Name
	labels["controller-uid"] = meta.UID
	labels["job-name"] = meta.Name
	owner := kube.OwnerRef{APIVersion: "batch/v1", Kind: "Job", Name: meta.Name, UID: meta.UID, Controller: true, BlockOwnerDeletion: true}
	b := []byte(`{"apiVersion":"v1","kind":"Pod","metadata":{"generateName":`)
	b = rawjson.AppendString(b, meta.Name+"-")
	b = append(b, `,"namespace":`...)
	b = rawjson.AppendString(b, ns)
	b = append(b, `,"labels":`...)
	b = kube.AppendStringMap(b, labels)
	if v, ok := job.Get("spec", "template", "metadata", "annotations"); ok {
		b = append(append(b, `,"annotations":`...), v...)
	}
	b = append(b, `,"ownerReferences":[`...)
	b = kube.AppendOwnerRef(b, owner)
	b = append(b, `]},"spec":`...)
	if v, ok := job.Get("spec", "template", "spec"); ok {
		b = append(b, v...)
	} else {
		b = append(b, "{}"...)
	}
	return append(b, '}')
}

func mustGet(v rawjson.Value, path ...string) rawjson.Value {
	out, _ := v.Get(path...)
	return out
}

// readStatus reads the job's current status.
func readStatus(job rawjson.Value) state {
	st := state{
		succeeded: kube.Int(job, 0, "status", "succeeded"), failed: kube.Int(job, 0, "status", "failed"),
		startTime: kube.Str(job, "status", "startTime"), completionTime: kube.Str(job, "status", "completionTime"),
	}
	if v, ok := job.Get("status", "conditions"); ok {
		_ = v.EachElem(func(_ int, e rawjson.Value) bool {
			cd := condition{kube.Str(e, "type"), kube.Str(e, "reason"), kube.Str(e, "message"), kube.Str(e, "lastTransitionTime")}
			st.conds = append(st.conds, cd)
			if (cd.typ == "Complete" || cd.typ == "Failed") && kube.Str(e, "status") == "True" {
				st.finished = true
			}
			return true
		})
	}
	return st
}

// writeStatus patches the status if it changed.
func writeStatus(req sdk.ReconcileRequest, job rawjson.Value, st *state) error {
	b := []byte(`{"status":{"active":`)
	b = strconv.AppendInt(b, int64(len(st.active)), 10)
	b = append(b, `,"ready":`...)
	b = strconv.AppendInt(b, st.ready, 10)
	b = append(b, `,"succeeded":`...)
	b = strconv.AppendInt(b, st.succeeded, 10)
	b = append(b, `,"failed":`...)
	b = strconv.AppendInt(b, st.failed, 10)
	b = append(b, `,"startTime":`...)
	b = rawjson.AppendString(b, st.startTime)
	if st.completionTime != "" {
		b = append(b, `,"completionTime":`...)
		b = rawjson.AppendString(b, st.completionTime)
	}
	if len(st.conds) > 0 {
		b = append(b, `,"conditions":[`...)
		for i, cd := range st.conds {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"type":`...)
			b = rawjson.AppendString(b, cd.typ)
			b = append(b, `,"status":"True","lastProbeTime":`...)
			b = rawjson.AppendString(b, cd.time)
			b = append(b, `,"lastTransitionTime":`...)
			b = rawjson.AppendString(b, cd.time)
			if cd.reason != "" {
				b = append(b, `,"reason":`...)
				b = rawjson.AppendString(b, cd.reason)
				b = append(b, `,"message":`...)
				b = rawjson.AppendString(b, cd.message)
			}
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	b = append(b, "}}"...)
	unchanged := kube.Int(job, 0, "status", "active") == int64(len(st.active)) && kube.Int(job, 0, "status", "ready") == st.ready &&
		kube.Int(job, 0, "status", "succeeded") == st.succeeded && kube.Int(job, 0, "status", "failed") == st.failed &&
		kube.Str(job, "status", "startTime") == st.startTime && kube.Str(job, "status", "completionTime") == st.completionTime &&
		len(readStatus(job).conds) == len(st.conds)
	if unchanged {
		return nil
	}
	_, err := sdk.MergePatch(Jobs, req.Namespace, req.Name, "status", b)
	if errors.Is(err, sdk.ErrNotFound) {
		return nil
	}
	return err
}

// finished handles ttlSecondsAfterFinished of a finished job.
func (c *Controller) finished(req sdk.ReconcileRequest, job rawjson.Value, st state, now time.Time) (sdk.ReconcileResult, error) {
	ttlV, ok := job.Get("spec", "ttlSecondsAfterFinished")
	if !ok || ttlV.IsNull() {
		return sdk.ReconcileResult{}, nil
	}
	ttl, _ := ttlV.Int()
	var at time.Time
	for _, cd := range st.conds {
		if cd.typ == "Complete" || cd.typ == "Failed" {
			at = kube.Time(rawjson.Value(strconv.Quote(cd.time)))
		}
	}
	if left := at.Add(time.Duration(ttl) * time.Second).Sub(now); left > 0 {
		return sdk.ReconcileResult{RequeueAfterMillis: left.Milliseconds() + 1}, nil
	}
	err := sdk.DeleteObject(Jobs, req.Namespace, req.Name, []byte(`{"propagationPolicy":"Background"}`))
	if errors.Is(err, sdk.ErrNotFound) {
		err = nil
	}
	return sdk.ReconcileResult{}, err
}
