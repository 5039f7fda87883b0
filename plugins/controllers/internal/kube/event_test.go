package kube_test

import (
	"encoding/json"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/tugboat-dev/tugboat/plugins/controllers/internal/kube"
)

// TestAppendEvent checks that the Event JSON the controllers write decodes
// as a core/v1 Event naming the object, with quotes in the message escaped.
func TestAppendEvent(t *testing.T) {
	meta := &kube.Meta{Name: "nightly", Namespace: "ops", UID: "u-1"}
	now := time.Date(2026, 11, 23, 8, 0, 0, 0, time.UTC)
	b := kube.AppendEvent(nil, kube.Involved{APIVersion: "batch/v1", Kind: "CronJob", Meta: meta},
		"cronjob-controller", "Warning", "UnknownTimeZone", `unknown time zone "Mars/Base"`, now)
	var ev corev1.Event
	if err := json.Unmarshal(b, &ev); err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
	io := ev.InvolvedObject
	if ev.GenerateName != "nightly." || ev.Namespace != "ops" || io.APIVersion != "batch/v1" || io.Kind != "CronJob" ||
		io.Name != "nightly" || io.Namespace != "ops" || string(io.UID) != "u-1" {
		t.Fatalf("event names %+v / %+v", ev.ObjectMeta, io)
	}
	if ev.Type != "Warning" || ev.Reason != "UnknownTimeZone" || ev.Message != `unknown time zone "Mars/Base"` ||
		ev.Source.Component != "cronjob-controller" || ev.Count != 1 || !ev.FirstTimestamp.Time.Equal(now) || !ev.LastTimestamp.Time.Equal(now) {
		t.Fatalf("event %+v", ev)
	}
}
