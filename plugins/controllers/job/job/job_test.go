package job_test

import (
	"strings"
	"testing"
	"time"

	"github.com/tugboat-dev/tugboat/plugins/controllers/job/job"
	"github.com/tugboat-dev/tugboat/sdk/plugintest"
)

const pi = `
apiVersion: batch/v1
kind: Job
metadata: {name: pi, namespace: default, uid: job-1}
spec:
  SPEC
  template:
    metadata: {labels: {app: pi}}
    spec: {restartPolicy: Never, containers: [{name: c, image: perl}]}
`

func newJob(t *testing.T, spec string) (*plugintest.Cluster, *plugintest.ControllerHarness) {
	t.Helper()
	c := plugintest.NewCluster(t, strings.ReplaceAll(pi, "SPEC", spec))
	ctl := job.New()
	ctl.Now = c.Now
	return c, plugintest.NewController(t, ctl, job.Manifest(), job.Spec(), "", c)
}

// finishPods ends every running pod with phase.
func finishPods(t *testing.T, c *plugintest.Cluster, phase string) {
	t.Helper()
	for _, p := range c.List("pods", "default") {
		if plugintest.Path(p, "status", "phase") == nil && plugintest.Path(p, "metadata", "deletionTimestamp") == nil {
			c.Update(t, "pods", "default", plugintest.Path(p, "metadata", "name").(string), func(o map[string]any) {
				o["status"] = map[string]any{"phase": phase}
			})
		}
	}
}

func active(c *plugintest.Cluster) int {
	n := 0
	for _, p := range c.List("pods", "default") {
		if plugintest.Path(p, "status", "phase") == nil && plugintest.Path(p, "metadata", "deletionTimestamp") == nil {
			n++
		}
	}
	return n
}

func status(c *plugintest.Cluster) map[string]any {
	st, _ := c.Get(job.Jobs, "default", "pi")["status"].(map[string]any)
	return st
}

func condition(c *plugintest.Cluster) (typ, reason string) {
	conds, _ := status(c)["conditions"].([]any)
	if len(conds) == 0 {
		return "", ""
	}
	last := conds[len(conds)-1].(map[string]any)
	r, _ := last["reason"].(string)
	return last["type"].(string), r
}

func TestCompletionsWithParallelism(t *testing.T) {
	c, h := newJob(t, "completions: 5\n  parallelism: 2")
	for step := 0; step < 10; step++ {
		if r := h.Reconcile(t, job.Jobs, "default", "pi"); r.Error != "" {
			t.Fatal(r.Error)
		}
		if n := active(c); n > 2 {
			t.Fatalf("step %d: %d active pods, parallelism 2", step, n)
		}
		finishPods(t, c, "Succeeded")
	}
	if typ, _ := condition(c); typ != "Complete" {
		t.Errorf("condition %s, want Complete; status %v", typ, status(c))
	}
	st := status(c)
	if st["succeeded"] != 5.0 || st["active"] != 0.0 || st["completionTime"] == nil || st["startTime"] == nil {
		t.Errorf("status %v", st)
	}
	if n := len(c.List("pods", "default")); n != 5 {
		t.Errorf("%d pods created, want 5", n)
	}
	p := c.List("pods", "default")[0]
	if plugintest.Path(p, "metadata", "labels", job.JobNameLabel) != "pi" || plugintest.Path(p, "metadata", "labels", "app") != "pi" ||
		plugintest.Path(p, "metadata", "ownerReferences").([]any)[0].(map[string]any)["uid"] != "job-1" {
		t.Errorf("pod metadata %v", p["metadata"])
	}
}

func TestWorkQueueJob(t *testing.T) {
	c, h := newJob(t, "parallelism: 3")
	h.Reconcile(t, job.Jobs, "default", "pi")
	if n := active(c); n != 3 {
		t.Fatalf("%d active pods, want 3", n)
	}
	finishPods(t, c, "Succeeded")
	h.Reconcile(t, job.Jobs, "default", "pi")
	if typ, _ := condition(c); typ != "Complete" || active(c) != 0 {
		t.Errorf("condition %s, %d active", typ, active(c))
	}
}

func TestBackoffLimit(t *testing.T) {
	c, h := newJob(t, "backoffLimit: 2")
	for range 5 {
		h.Reconcile(t, job.Jobs, "default", "pi")
		finishPods(t, c, "Failed")
	}
	typ, reason := condition(c)
	if typ != "Failed" || reason != "BackoffLimitExceeded" || status(c)["failed"] != 3.0 {
		t.Errorf("condition %s/%s, status %v; want Failed BackoffLimitExceeded after 3 failures", typ, reason, status(c))
	}
}

func TestActiveDeadline(t *testing.T) {
	c, h := newJob(t, "activeDeadlineSeconds: 30")
	r := h.Reconcile(t, job.Jobs, "default", "pi")
	if r.RequeueAfterMillis <= 0 || r.RequeueAfterMillis > 30001 || active(c) != 1 {
		t.Fatalf("result %+v, %d active", r, active(c))
	}
	c.Advance(31 * time.Second)
	h.Reconcile(t, job.Jobs, "default", "pi")
	if typ, reason := condition(c); typ != "Failed" || reason != "DeadlineExceeded" || active(c) != 0 {
		t.Errorf("condition %s/%s, %d active; want Failed DeadlineExceeded and no active pods", typ, reason, active(c))
	}
}

func TestTTLAfterFinished(t *testing.T) {
	c, h := newJob(t, "ttlSecondsAfterFinished: 10")
	h.Reconcile(t, job.Jobs, "default", "pi")
	finishPods(t, c, "Succeeded")
	r := h.Reconcile(t, job.Jobs, "default", "pi")
	if r.RequeueAfterMillis <= 0 || c.Get(job.Jobs, "default", "pi") == nil {
		t.Fatalf("finished job: result %+v", r)
	}
	c.Advance(11 * time.Second)
	h.Reconcile(t, job.Jobs, "default", "pi")
	if c.Get(job.Jobs, "default", "pi") != nil {
		t.Error("job not deleted after its TTL")
	}
}
