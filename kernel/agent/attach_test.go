package agent_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/tugboat-dev/tugboat/kernel/agent"
	"github.com/tugboat-dev/tugboat/kernel/dataplane/exec"
)

// The exec runtime feeds attached stdin.
var _ agent.StdinAttacher = (*exec.Runtime)(nil)

// TestAttachRefusals: /attach answers a metav1.Status before any stream
// upgrade when it cannot attach (kubectl attach -i shows the message);
// the streaming itself is tested end to end with kubectl (test/e2e).
func TestAttachRefusals(t *testing.T) {
	cs := newClient(t)
	n := runNode(t, cs, agent.Config{})
	create(t, cs, shPod("quiet", "exec sleep 60", corev1.RestartPolicyAlways))
	waitPod(t, cs, "quiet", "running", phase(corev1.PodRunning))
	for _, tc := range []struct {
		name, path string
		code       int
		message    string
	}{
		{"terminal", "/attach/default/quiet/main?stdin=true&stdout=true&tty=true", http.StatusBadRequest, "terminal (tty) is not supported"},
		{"stdin not requested at start", "/attach/default/quiet/main?stdin=true&stdout=true", http.StatusBadRequest, "not started with stdin"},
		{"no such pod", "/attach/default/nope/main?stdout=true", http.StatusNotFound, "nope"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			n.agent.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodPost, tc.path, nil))
			if rec.Code != tc.code || !strings.Contains(rec.Body.String(), tc.message) || !strings.Contains(rec.Body.String(), `"kind":"Status"`) {
				t.Errorf("%d %s, want %d and a Status mentioning %q", rec.Code, rec.Body, tc.code, tc.message)
			}
		})
	}
}
