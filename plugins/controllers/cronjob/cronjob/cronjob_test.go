package cronjob_test

import (
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	_ "time/tzdata"

	"github.com/tugboat-dev/tugboat/plugins/controllers/cronjob/cronjob"
	"github.com/tugboat-dev/tugboat/sdk/plugintest"
)

const cj = `
apiVersion: batch/v1
kind: CronJob
metadata: {name: tick, namespace: default, uid: cj-1}
spec:
  schedule: "SCHEDULE"
  EXTRA
  jobTemplate:
    metadata: {labels: {app: tick}}
    spec:
      template:
        spec:
          restartPolicy: OnFailure
          containers: [{name: c, image: busybox}]
`

func cronJob(schedule, extra string) string {
	return strings.NewReplacer("SCHEDULE", schedule, "EXTRA", extra).Replace(cj)
}

type fixture struct {
	t *testing.T
	c *plugintest.Cluster
	h *plugintest.ControllerHarness
}

func newFixture(t *testing.T, objs ...string) *fixture {
	t.Helper()
	c := plugintest.NewCluster(t, objs...)
	ctl := cronjob.New()
	ctl.Now = c.Now
	return &fixture{t: t, c: c, h: plugintest.NewController(t, ctl, cronjob.Manifest(), cronjob.Spec(), "", c)}
}

func (f *fixture) reconcile() int64 {
	f.t.Helper()
	res := f.h.Reconcile(f.t, cronjob.CronJobs, "default", "tick")
	if res.Error != "" {
		f.t.Fatalf("reconcile: %s", res.Error)
	}
	return res.RequeueAfterMillis
}

func (f *fixture) jobs() []string {
	var out []string
	for _, j := range f.c.List(cronjob.Jobs, "default") {
		out = append(out, plugintest.Path(j, "metadata", "name").(string))
	}
	return out
}

func (f *fixture) finish(name, condition string) {
	f.t.Helper()
	now := f.c.Now().Format(time.RFC3339)
	f.c.Update(f.t, cronjob.Jobs, "default", name, func(j map[string]any) {
		j["status"] = map[string]any{"startTime": now, "completionTime": now,
			"conditions": []any{map[string]any{"type": condition, "status": "True"}}}
	})
}

func (f *fixture) events() []string {
	var out []string
	for _, e := range f.c.List("events", "default") {
		out = append(out, e["reason"].(string))
	}
	return out
}

func (f *fixture) status() map[string]any {
	st, _ := f.c.Get(cronjob.CronJobs, "default", "tick")["status"].(map[string]any)
	return st
}

// jobName is the name Kubernetes gives the Job scheduled at t.
func jobName(t time.Time) string { return "tick-" + itoa(t.Unix()/60) }

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func TestCronJobCreatesJobsOnSchedule(t *testing.T) {
	f := newFixture(t, cronJob("*/5 * * * *", ""))
	start := f.c.Now() // 2026-01-01T00:00:00Z, the CronJob's creation
	if wait := f.reconcile(); wait < 5*60*1000 || wait > 5*60*1000+1000 {
		t.Errorf("requeue after %d ms, want the next schedule (5 min)", wait)
	}
	if jobs := f.jobs(); len(jobs) != 0 {
		t.Fatalf("jobs %v before the first schedule", jobs)
	}
	f.c.Advance(5*time.Minute + 2*time.Second)
	wait := f.reconcile()
	want := jobName(start.Add(5 * time.Minute))
	if jobs := f.jobs(); !slices.Equal(jobs, []string{want}) {
		t.Fatalf("jobs %v, want [%s]", jobs, want)
	}
	if wait <= 0 || wait > 5*60*1000 {
		t.Errorf("requeue after %d ms", wait)
	}
	j := f.c.Get(cronjob.Jobs, "default", want)
	ref := plugintest.Path(j, "metadata", "ownerReferences").([]any)[0].(map[string]any)
	if ref["kind"] != "CronJob" || ref["uid"] != "cj-1" || ref["controller"] != true ||
		plugintest.Path(j, "metadata", "labels", "app") != "tick" ||
		plugintest.Path(j, "metadata", "annotations", cronjob.ScheduledTimestampAnnotation) != "2026-01-01T00:05:00Z" ||
		plugintest.Path(j, "spec", "template", "spec", "restartPolicy") != "OnFailure" {
		t.Errorf("job %v", j)
	}
	st := f.status()
	if st["lastScheduleTime"] != "2026-01-01T00:05:00Z" || len(st["active"].([]any)) != 1 {
		t.Errorf("status %v", st)
	}
	f.reconcile()
	if jobs := f.jobs(); len(jobs) != 1 {
		t.Errorf("a second reconcile created more jobs: %v", jobs)
	}
	if ev := f.events(); !slices.Contains(ev, "SuccessfulCreate") {
		t.Errorf("events %v", ev)
	}
	f.finish(want, "Complete")
	f.reconcile()
	st = f.status()
	if st["active"] != nil || st["lastSuccessfulTime"] != f.c.Now().Format(time.RFC3339) {
		t.Errorf("status after the job completed: %v", st)
	}
}

func TestCronJobConcurrencyPolicy(t *testing.T) {
	for _, tc := range []struct {
		policy     string
		wantJobs   int
		wantActive int
	}{
		{"Allow", 2, 2}, {"Forbid", 1, 1}, {"Replace", 1, 1},
	} {
		t.Run(tc.policy, func(t *testing.T) {
			f := newFixture(t, cronJob("* * * * *", "concurrencyPolicy: "+tc.policy))
			f.c.Advance(time.Minute)
			f.reconcile()
			first := f.jobs()
			f.c.Advance(time.Minute)
			f.reconcile()
			jobs := f.jobs()
			if len(jobs) != tc.wantJobs || len(f.status()["active"].([]any)) != tc.wantActive {
				t.Fatalf("jobs %v, status %v; want %d jobs, %d active", jobs, f.status(), tc.wantJobs, tc.wantActive)
			}
			switch tc.policy {
			case "Replace":
				if slices.Equal(jobs, first) {
					t.Errorf("Replace kept the old job %v", jobs)
				}
			case "Forbid":
				// The skipped schedule runs once the active job ends.
				f.finish(first[0], "Complete")
				f.reconcile()
				if jobs := f.jobs(); len(jobs) != 2 {
					t.Errorf("after the active job ended: jobs %v", jobs)
				}
			}
		})
	}
}

func TestCronJobSuspend(t *testing.T) {
	f := newFixture(t, cronJob("* * * * *", "suspend: true"))
	f.c.Advance(10 * time.Minute)
	if wait := f.reconcile(); wait != 0 {
		t.Errorf("suspended CronJob asks for a requeue after %d ms", wait)
	}
	if jobs := f.jobs(); len(jobs) != 0 {
		t.Errorf("suspended CronJob created %v", jobs)
	}
}

func TestCronJobMissedSchedules(t *testing.T) {
	t.Run("past the starting deadline", func(t *testing.T) {
		f := newFixture(t, cronJob("0 * * * *", "startingDeadlineSeconds: 60"))
		f.c.Advance(90 * time.Minute) // 01:30; 01:00 was missed by more than 60 s
		f.reconcile()
		if jobs := f.jobs(); len(jobs) != 0 {
			t.Errorf("jobs %v past the deadline", jobs)
		}
		f.c.Advance(30*time.Minute + 30*time.Second) // 02:00:30, within the deadline
		f.reconcile()
		if jobs := f.jobs(); !slices.Equal(jobs, []string{jobName(time.Date(2026, 1, 1, 2, 0, 0, 0, time.UTC))}) {
			t.Errorf("jobs %v, want the 02:00 one", jobs)
		}
	})
	t.Run("too many missed", func(t *testing.T) {
		f := newFixture(t, cronJob("* * * * *", ""))
		f.c.Advance(200 * time.Minute)
		f.reconcile()
		if jobs := f.jobs(); !slices.Equal(jobs, []string{jobName(f.c.Now())}) {
			t.Errorf("jobs %v, want only the most recent schedule", jobs)
		}
		if ev := f.events(); !slices.Contains(ev, "TooManyMissedTimes") {
			t.Errorf("events %v, want TooManyMissedTimes", ev)
		}
	})
	t.Run("a few missed run once", func(t *testing.T) {
		f := newFixture(t, cronJob("* * * * *", ""))
		f.c.Advance(5 * time.Minute)
		f.reconcile()
		if jobs := f.jobs(); len(jobs) != 1 || slices.Contains(f.events(), "TooManyMissedTimes") {
			t.Errorf("jobs %v, events %v", jobs, f.events())
		}
	})
}

func TestCronJobHistoryLimits(t *testing.T) {
	f := newFixture(t, cronJob("* * * * *", "successfulJobsHistoryLimit: 2\n  failedJobsHistoryLimit: 1"))
	var names []string
	for i := range 6 {
		f.c.Advance(time.Minute)
		f.reconcile()
		name := jobName(f.c.Now())
		names = append(names, name)
		if i%2 == 0 {
			f.finish(name, "Complete")
		} else {
			f.finish(name, "Failed")
		}
	}
	f.reconcile()
	// Succeeded: 0, 2, 4 -> keep 2, 4; failed: 1, 3, 5 -> keep 5.
	want := []string{names[2], names[4], names[5]}
	slices.Sort(want)
	if jobs := f.jobs(); !slices.Equal(jobs, want) {
		t.Errorf("jobs %v, want %v", jobs, want)
	}
}

func TestCronJobTimeZone(t *testing.T) {
	f := newFixture(t, cronJob("0 9 * * *", "timeZone: America/New_York"))
	// Now 2026-01-01T00:00Z; 09:00 in New York (EST) is 14:00Z.
	if wait := time.Duration(f.reconcile()) * time.Millisecond; wait < 14*time.Hour || wait > 14*time.Hour+time.Second {
		t.Errorf("requeue after %v, want 14h", wait)
	}
	f.c.Advance(14 * time.Hour)
	f.reconcile()
	j := f.c.Get(cronjob.Jobs, "default", jobName(time.Date(2026, 1, 1, 14, 0, 0, 0, time.UTC)))
	if j == nil || plugintest.Path(j, "metadata", "annotations", cronjob.ScheduledTimestampAnnotation) != "2026-01-01T09:00:00-05:00" {
		t.Errorf("job %v, jobs %v", j, f.jobs())
	}
	bad := newFixture(t, cronJob("0 9 * * *", "timeZone: Mars/Olympus"))
	bad.c.Advance(24 * time.Hour)
	bad.reconcile()
	if jobs := bad.jobs(); len(jobs) != 0 || !slices.Contains(bad.events(), "UnknownTimeZone") {
		t.Errorf("unknown time zone: jobs %v, events %v", jobs, bad.events())
	}
}
