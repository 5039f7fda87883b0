// Package cronjob is the CronJob controller: it creates a Job from the
// jobTemplate at each scheduled time (Schedule; spec.timeZone through the
// time zone database the plugin embeds), honours concurrencyPolicy
// (Allow, Forbid, Replace), suspend and startingDeadlineSeconds (a
// schedule missed by more than the deadline is skipped; more than 100
// missed times give a warning event, as in Kubernetes), keeps
// successful/failedJobsHistoryLimit finished Jobs, writes status (active,
// lastScheduleTime, lastSuccessfulTime) and asks to be reconciled again at
// the next scheduled time.
package cronjob

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

// Resources the controller reads and writes.
const (
	CronJobs = "cronjobs.batch"
	Jobs     = "jobs.batch"
)

// ScheduledTimestampAnnotation is set on each Job to its scheduled time.
const ScheduledTimestampAnnotation = "batch.kubernetes.io/cronjob-scheduled-timestamp"

// maxMissed is how many missed schedules Kubernetes tolerates before it
// warns (TooManyMissedTimes).
const maxMissed = 100

// Manifest is the plugin's manifest.
func Manifest() sdk.Manifest {
	return sdk.Manifest{
		Name:  "cronjob",
		Kinds: []string{sdk.KindController},
		Rules: []sdk.Rule{
			{Verbs: []string{"get", "list"}, Resources: []string{CronJobs, Jobs}},
			{Verbs: []string{"create", "delete"}, Resources: []string{Jobs}},
			{Verbs: []string{"patch", "update"}, Resources: []string{CronJobs + "/status"}},
			{Verbs: []string{"create"}, Resources: []string{"events"}},
		},
		Grants: []string{hostapi.CapClock},
	}
}

// Spec is the plugin's controller spec.
func Spec() sdk.ControllerSpec {
	return sdk.ControllerSpec{Watches: []sdk.Watch{
		{Resource: CronJobs, Enqueue: hostapi.EnqueueSelf},
		{Resource: Jobs, Enqueue: hostapi.EnqueueOwner},
	}}
}

// Controller reconciles CronJobs.
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

// job is what the controller reads of one of its Jobs.
type job struct {
	meta      kube.Meta
	finished  bool
	succeeded bool
	start     time.Time // status.startTime, else creation
	completed time.Time
}

func readJob(v rawjson.Value) job {
	j := job{meta: kube.ReadMeta(v)}
	j.start = kube.Time(mustGet(v, "status", "startTime"))
	if j.start.IsZero() {
		j.start = j.meta.Created
	}
	j.completed = kube.Time(mustGet(v, "status", "completionTime"))
	if conds, ok := v.Get("status", "conditions"); ok {
		for _, cd := range conds.Elems() {
			if kube.Str(cd, "status") != "True" {
				continue
			}
			switch kube.Str(cd, "type") {
			case "Complete", "SuccessCriteriaMet":
				j.finished, j.succeeded = true, true
			case "Failed", "FailureTarget":
				j.finished = true
			}
		}
	}
	return j
}

// Reconcile syncs one CronJob.
func (c *Controller) Reconcile(req sdk.ReconcileRequest) (sdk.ReconcileResult, error) {
	cj, err := sdk.Get(CronJobs, req.Namespace, req.Name)
	if errors.Is(err, sdk.ErrNotFound) {
		return sdk.ReconcileResult{}, nil
	}
	if err != nil {
		return sdk.ReconcileResult{}, err
	}
	meta := kube.ReadMeta(cj)
	raw, err := sdk.List(sdk.ListRequest{Resource: Jobs, Namespace: req.Namespace, FieldSelector: hostapi.FieldOwnerUID + "=" + meta.UID})
	if err != nil {
		return sdk.ReconcileResult{}, err
	}
	var jobs []job
	for _, v := range raw {
		j := readJob(v)
		if ref, ok := j.meta.ControllerRef(); ok && ref.UID == meta.UID {
			jobs = append(jobs, j)
		}
	}
	st := status{lastSchedule: kube.Time(mustGet(cj, "status", "lastScheduleTime")),
		lastSuccess: kube.Time(mustGet(cj, "status", "lastSuccessfulTime"))}
	for _, j := range jobs {
		if j.succeeded && j.completed.After(st.lastSuccess) {
			st.lastSuccess = j.completed
		}
	}
	if meta.Deleting {
		return sdk.ReconcileResult{}, nil
	}
	now := c.now()
	var result sdk.ReconcileResult
	var syncErr error
	if !kube.Bool(cj, "spec", "suspend") {
		result, syncErr = c.schedule(cj, &meta, &jobs, &st, now)
	}
	jobs = cleanupHistory(cj, req.Namespace, jobs)
	for _, j := range jobs {
		if !j.finished && !j.meta.Deleting {
			st.active = append(st.active, j.meta)
		}
	}
	if err := writeStatus(cj, &meta, &st); err != nil && syncErr == nil {
		syncErr = err
	}
	return result, syncErr
}

// status is the CronJob status the controller writes.
type status struct {
	active                    []kube.Meta
	lastSchedule, lastSuccess time.Time
}

// schedule creates the Job of the most recent missed schedule, if any is
// due, and returns when to look again.
func (c *Controller) schedule(cj rawjson.Value, meta *kube.Meta, jobs *[]job, st *status, now time.Time) (sdk.ReconcileResult, error) {
	sched, err := ParseSchedule(kube.Str(cj, "spec", "schedule"))
	if err != nil {
		event(meta, "Warning", "UnparseableSchedule", "unparseable schedule: "+kube.Str(cj, "spec", "schedule")+": "+err.Error(), now)
		return sdk.ReconcileResult{}, nil
	}
	loc := time.UTC
	if tz := kube.Str(cj, "spec", "timeZone"); tz != "" {
		if loc, err = time.LoadLocation(tz); err != nil {
			event(meta, "Warning", "UnknownTimeZone", "unknown time zone "+tz, now)
			return sdk.ReconcileResult{}, nil
		}
	}
	now = now.In(loc)
	earliest := st.lastSchedule
	if earliest.IsZero() {
		earliest = meta.Created
	}
	earliest = earliest.In(loc)
	sds, hasDeadline := cj.Get("spec", "startingDeadlineSeconds")
	deadline, _ := sds.Int()
	hasDeadline = hasDeadline && !sds.IsNull()
	if hasDeadline {
		if d := now.Add(-time.Duration(deadline) * time.Second); d.After(earliest) {
			earliest = d
		}
	}
	scheduled, missed := mostRecent(sched, earliest, now)
	next := sched.Next(now)
	result := requeueAt(next, now)
	if scheduled.IsZero() {
		return result, nil
	}
	if missed > maxMissed {
		event(meta, "Warning", "TooManyMissedTimes",
			"too many missed start times: "+strconv.Itoa(missed)+"; set or decrease .spec.startingDeadlineSeconds or check clock skew", now)
	}
	if hasDeadline && scheduled.Add(time.Duration(deadline)*time.Second).Before(now) {
		event(meta, "Warning", "MissSchedule", "missed scheduled time to start a job: "+scheduled.Format(time.RFC1123Z), now)
		return result, nil
	}
	name := meta.Name + "-" + strconv.FormatInt(scheduled.Unix()/60, 10)
	for _, j := range *jobs {
		if j.meta.Name == name {
			st.lastSchedule = scheduled // created before; the status write was lost
			return result, nil
		}
	}
	active := 0
	for _, j := range *jobs {
		if !j.finished && !j.meta.Deleting {
			active++
		}
	}
	switch kube.Str(cj, "spec", "concurrencyPolicy") {
	case "Forbid":
		if active > 0 {
			return result, nil // the Job's end enqueues the CronJob again
		}
	case "Replace":
		for i := range *jobs {
			j := &(*jobs)[i]
			if j.finished || j.meta.Deleting {
				continue
			}
			err := sdk.DeleteObject(Jobs, meta.Namespace, j.meta.Name, []byte(`{"propagationPolicy":"Background"}`))
			if err != nil && !errors.Is(err, sdk.ErrNotFound) {
				return result, err
			}
			j.meta.Deleting = true
			event(meta, "Normal", "SuccessfulDelete", "Deleted job "+j.meta.Name, now)
		}
	}
	created, err := sdk.CreateObject(Jobs, meta.Namespace, jobBody(cj, meta, name, scheduled))
	switch {
	case errors.Is(err, sdk.ErrAlreadyExists):
		st.lastSchedule = scheduled
		return result, nil
	case err != nil:
		event(meta, "Warning", "FailedCreate", "Error creating job: "+err.Error(), now)
		return result, err
	}
	*jobs = append(*jobs, readJob(created))
	st.lastSchedule = scheduled
	event(meta, "Normal", "SuccessfulCreate", "Created job "+name, now)
	return result, nil
}

// mostRecent returns the latest activation in (earliest, now] and how many
// there were.
func mostRecent(s Schedule, earliest, now time.Time) (time.Time, int) {
	var last time.Time
	n := 0
	for t := s.Next(earliest); !t.IsZero() && !t.After(now); t = s.Next(t) {
		last = t
		n++
		if n > 1_000_000 { // a guard; far beyond maxMissed
			break
		}
	}
	return last, n
}

// requeueAt asks for a reconcile just after next.
func requeueAt(next, now time.Time) sdk.ReconcileResult {
	if next.IsZero() {
		return sdk.ReconcileResult{}
	}
	return sdk.ReconcileResult{RequeueAfterMillis: next.Sub(now).Milliseconds() + 100}
}

// jobBody is the Job for the schedule at t.
func jobBody(cj rawjson.Value, meta *kube.Meta, name string, t time.Time) []byte {
	tmpl, _ := cj.Get("spec", "jobTemplate")
	b := []byte(`{"apiVersion":"batch/v1","kind":"Job","metadata":{"name":`)
	b = rawjson.AppendString(b, name)
	b = append(b, `,"namespace":`...)
	b = rawjson.AppendString(b, meta.Namespace)
	if v, ok := tmpl.Get("metadata", "labels"); ok {
		b = append(append(b, `,"labels":`...), v...)
	}
	ann := kube.StringMap(mustGet(tmpl, "metadata", "annotations"))
	if ann == nil {
		ann = map[string]string{}
	}
	ann[ScheduledTimestampAnnotation] = t.Format(time.RFC3339)
	b = append(b, `,"annotations":`...)
	b = kube.AppendStringMap(b, ann)
	b = append(b, `,"ownerReferences":[`...)
	b = kube.AppendOwnerRef(b, kube.OwnerRef{APIVersion: "batch/v1", Kind: "CronJob", Name: meta.Name, UID: meta.UID,
		Controller: true, BlockOwnerDeletion: true})
	b = append(b, `]},"spec":`...)
	if v, ok := tmpl.Get("spec"); ok {
		b = append(b, v...)
	} else {
		b = append(b, "{}"...)
	}
	return append(b, '}')
}

// cleanupHistory deletes the oldest finished Jobs beyond the history
// limits and returns the rest.
func cleanupHistory(cj rawjson.Value, ns string, jobs []job) []job {
	limit := func(field string, def int64) int64 {
		v, ok := cj.Get("spec", field)
		if !ok || v.IsNull() {
			return def
		}
		n, _ := v.Int()
		return n
	}
	keep := map[bool]int64{true: limit("successfulJobsHistoryLimit", 3), false: limit("failedJobsHistoryLimit", 1)}
	slices.SortStableFunc(jobs, func(a, b job) int { return b.start.Compare(a.start) }) // newest first
	seen := map[bool]int64{}
	out := jobs[:0]
	for _, j := range jobs {
		if j.finished && !j.meta.Deleting {
			seen[j.succeeded]++
			if seen[j.succeeded] > keep[j.succeeded] {
				err := sdk.DeleteObject(Jobs, ns, j.meta.Name, []byte(`{"propagationPolicy":"Background"}`))
				if err == nil || errors.Is(err, sdk.ErrNotFound) {
					continue
				}
			}
		}
		out = append(out, j)
	}
	return out
}

// writeStatus patches the status if it changed.
func writeStatus(cj rawjson.Value, meta *kube.Meta, st *status) error {
	slices.SortFunc(st.active, func(a, b kube.Meta) int { return compare(a.Name, b.Name) })
	b := []byte(`{"status":{"active":`)
	if len(st.active) == 0 {
		b = append(b, "null"...)
	} else {
		b = append(b, '[')
		for i, m := range st.active {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"kind":"Job","namespace":`...)
			b = rawjson.AppendString(b, m.Namespace)
			b = append(b, `,"name":`...)
			b = rawjson.AppendString(b, m.Name)
			b = append(b, `,"uid":`...)
			b = rawjson.AppendString(b, m.UID)
			b = append(b, `,"apiVersion":"batch/v1","resourceVersion":`...)
			b = rawjson.AppendString(b, m.ResourceVersion)
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	var old []string
	if v, ok := cj.Get("status", "active"); ok {
		for _, e := range v.Elems() {
			old = append(old, kube.Str(e, "uid"))
		}
	}
	var cur []string
	for _, m := range st.active {
		cur = append(cur, m.UID)
	}
	changed := !slices.Equal(old, cur)
	for _, f := range []struct {
		key string
		t   time.Time
	}{{"lastScheduleTime", st.lastSchedule}, {"lastSuccessfulTime", st.lastSuccess}} {
		if f.t.IsZero() {
			continue
		}
		s := kube.FormatTime(f.t)
		if kube.Str(cj, "status", f.key) != s {
			changed = true
		}
		b = append(b, ',')
		b = rawjson.AppendString(b, f.key)
		b = append(b, ':')
		b = rawjson.AppendString(b, s)
	}
	if !changed {
		return nil
	}
	b = append(b, "}}"...)
	_, err := sdk.MergePatch(CronJobs, meta.Namespace, meta.Name, "status", b)
	if errors.Is(err, sdk.ErrNotFound) {
		return nil
	}
	return err
}

func compare(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// event records an event about the CronJob (best effort).
func event(meta *kube.Meta, typ, reason, message string, now time.Time) {
	kube.RecordEvent(kube.Involved{APIVersion: "batch/v1", Kind: "CronJob", Meta: meta}, "cronjob-controller", typ, reason, message, now)
}

func mustGet(v rawjson.Value, path ...string) rawjson.Value {
	out, _ := v.Get(path...)
	return out
}
