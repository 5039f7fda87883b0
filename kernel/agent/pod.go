package agent

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tugboat-dev/tugboat/kernel/dataplane"
)

// Backoff of restarted containers (CrashLoopBackOff): the first restart
// is immediate, then 10s doubling to 5m; a container that ran for 10
// minutes starts over.
const (
	backoffInitial = 10 * time.Second
	backoffMax     = 5 * time.Minute
	backoffReset   = 10 * time.Minute
	resyncInterval = 10 * time.Second
)

// ctrState is the worker's view of one container of its pod.
type ctrState struct {
	name    string
	init    bool
	attempt int    // attempt number of id (= restart count)
	id      string // runtime ID of the current attempt; "" before the first
	prevID  string // runtime ID of the previous attempt

	backoff   time.Duration
	restartAt time.Time // when the exited attempt may be restarted
	scheduled string    // the attempt id restartAt was computed for
	configErr string    // why the container cannot be created
	probes    *prober
}

// podWorker runs one pod. update and wake may be called from any
// goroutine; everything else runs on the worker's goroutine.
type podWorker struct {
	a   *Agent
	uid string

	mu      sync.Mutex
	pod     *corev1.Pod
	deleted bool

	wakeCh chan struct{}
	done   chan struct{}

	ctrs     map[string]*ctrState
	prepared bool
	volumes  map[string]string // volume name -> host path
	started  time.Time
	wroteOn  string // resourceVersion the last status write replaced
}

func newPodWorker(a *Agent, pod *corev1.Pod) *podWorker {
	return &podWorker{
		a: a, uid: string(pod.UID), pod: pod,
		wakeCh: make(chan struct{}, 1), done: make(chan struct{}),
		ctrs: make(map[string]*ctrState),
	}
}

func (w *podWorker) update(pod *corev1.Pod, deleted bool) {
	w.mu.Lock()
	w.pod, w.deleted = pod, w.deleted || deleted
	w.mu.Unlock()
	w.wake()
}

func (w *podWorker) wake() {
	select {
	case w.wakeCh <- struct{}{}:
	default:
	}
}

func (w *podWorker) wait() { <-w.done }

func (w *podWorker) snapshot() (*corev1.Pod, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.pod, w.deleted
}

func (w *podWorker) run(ctx context.Context) {
	defer close(w.done)
	w.adopt()
	for {
		next, finished := w.sync(ctx)
		if finished {
			w.a.workerDone(w.uid)
			return
		}
		t := time.NewTimer(time.Until(next))
		select {
		case <-ctx.Done():
			t.Stop()
			w.stopProbes()
			return
		case <-w.wakeCh:
		case <-t.C:
		}
		t.Stop()
	}
}

// adopt rebuilds the container states from the runtime after a restart.
func (w *podWorker) adopt() {
	list, err := w.a.rt.List()
	if err != nil {
		return
	}
	type att struct {
		n  int
		id string
	}
	byName := make(map[string][]att)
	for _, st := range list {
		if st.Labels[labelPodUID] != w.uid {
			continue
		}
		n, _ := strconv.Atoi(st.Labels[labelAttempt])
		name := st.Labels[labelContainer]
		byName[name] = append(byName[name], att{n, st.ID})
		if _, ok := w.ctrs[name]; !ok {
			w.ctrs[name] = &ctrState{name: name, init: st.Labels[labelInit] == "true"}
		}
	}
	for name, atts := range byName {
		sort.Slice(atts, func(i, j int) bool { return atts[i].n < atts[j].n })
		cs := w.ctrs[name]
		last := atts[len(atts)-1]
		cs.id, cs.attempt = last.id, last.n
		if len(atts) > 1 {
			cs.prevID = atts[len(atts)-2].id
		}
	}
}

// ctr returns the state of a container, creating it.
func (w *podWorker) ctr(name string, init bool) *ctrState {
	cs := w.ctrs[name]
	if cs == nil {
		cs = &ctrState{name: name, init: init}
		w.ctrs[name] = cs
	}
	return cs
}

// sync drives the pod one step; it returns when to look again, or
// finished once the pod is gone and cleaned up.
func (w *podWorker) sync(ctx context.Context) (time.Time, bool) {
	pod, deleted := w.snapshot()
	if deleted || pod.DeletionTimestamp != nil {
		w.terminate(ctx, pod, deleted)
		return time.Time{}, true
	}
	now := time.Now()
	next := now.Add(resyncInterval)
	soon := func(t time.Time) {
		if t.Before(next) {
			next = t
		}
	}
	if w.started.IsZero() {
		w.started = now
	}
	var prepErr error
	if !w.prepared {
		if prepErr = w.prepare(ctx, pod); prepErr == nil {
			w.prepared = true
		} else {
			soon(now.Add(2 * time.Second))
		}
	}
	if w.prepared && !terminalPhase(pod.Status.Phase) {
		if t, ok := w.drive(ctx, pod, now); ok {
			soon(t)
		}
	}
	status := w.status(pod, prepErr)
	w.a.releaseFinished(pod, status.Phase)
	if err := w.writeStatus(ctx, pod, status); err != nil {
		if ctx.Err() == nil {
			w.a.log.Debug("agent: pod status", "pod", pod.Namespace+"/"+pod.Name, "err", err)
		}
		soon(now.Add(200 * time.Millisecond))
	}
	return next, false
}

func terminalPhase(p corev1.PodPhase) bool { return p == corev1.PodSucceeded || p == corev1.PodFailed }

// drive starts, restarts and kills containers; it returns the next time
// something is due (a backoff expiry).
func (w *podWorker) drive(ctx context.Context, pod *corev1.Pod, now time.Time) (time.Time, bool) {
	var due time.Time
	at := func(t time.Time) {
		if due.IsZero() || t.Before(due) {
			due = t
		}
	}
	policy := pod.Spec.RestartPolicy
	for i := range pod.Spec.InitContainers {
		c := &pod.Spec.InitContainers[i]
		cs := w.ctr(c.Name, true)
		st, ok := w.state(cs.id)
		switch {
		case !ok:
			if now.Before(cs.restartAt) {
				at(cs.restartAt)
				return due, true
			}
			w.start(ctx, pod, c, cs)
			return due, true
		case st.Status == dataplane.Running:
			return due, true
		case st.ExitCode == 0:
			continue // done; next init container
		case policy == corev1.RestartPolicyNever:
			return due, true // the pod fails
		default:
			if t, restarted := w.restart(ctx, pod, c, cs, st, now); !restarted {
				at(t)
			}
			return due, true
		}
	}
	for i := range pod.Spec.Containers {
		c := &pod.Spec.Containers[i]
		cs := w.ctr(c.Name, false)
		st, ok := w.state(cs.id)
		switch {
		case !ok:
			if now.Before(cs.restartAt) {
				at(cs.restartAt)
				continue
			}
			w.start(ctx, pod, c, cs)
		case st.Status == dataplane.Running:
			if cs.probes != nil {
				if why := cs.probes.killReason(); why != "" {
					w.a.log.Info("agent: restarting container", "pod", pod.Namespace+"/"+pod.Name, "container", c.Name, "reason", why)
					w.a.event(pod, corev1.EventTypeWarning, eventUnhealthy, "%s", why)
					w.a.event(pod, corev1.EventTypeNormal, eventKilling, "Container %s failed its probe, will be restarted", c.Name)
					w.stopContainer(ctx, pod, cs)
					w.wake()
				}
			}
		default:
			restart := policy == corev1.RestartPolicyAlways || policy == "" ||
				(policy == corev1.RestartPolicyOnFailure && st.ExitCode != 0)
			if restart {
				if t, restarted := w.restart(ctx, pod, c, cs, st, now); !restarted {
					at(t)
				}
			}
		}
	}
	return due, !due.IsZero()
}

// restart starts the next attempt of an exited container once its
// backoff has passed; otherwise it returns when it will have.
func (w *podWorker) restart(ctx context.Context, pod *corev1.Pod, c *corev1.Container, cs *ctrState, st dataplane.State, now time.Time) (time.Time, bool) {
	if cs.scheduled != cs.id {
		if st.FinishedAt.Sub(st.StartedAt) >= backoffReset {
			cs.backoff = 0
		}
		cs.restartAt = st.FinishedAt.Add(cs.backoff)
		cs.scheduled = cs.id
		if cs.backoff > 0 {
			w.a.event(pod, corev1.EventTypeWarning, eventBackOff, "Back-off restarting failed container %s in pod %s", c.Name, pod.Name)
		}
		cs.backoff = min(max(cs.backoff*2, backoffInitial), backoffMax)
	}
	if now.Before(cs.restartAt) {
		return cs.restartAt, false
	}
	w.start(ctx, pod, c, cs)
	return time.Time{}, true
}

// state returns the runtime state of a container attempt.
func (w *podWorker) state(id string) (dataplane.State, bool) {
	if id == "" {
		return dataplane.State{}, false
	}
	st, err := w.a.rt.State(id)
	return st, err == nil
}

// start starts the next attempt of container c.
func (w *podWorker) start(ctx context.Context, pod *corev1.Pod, c *corev1.Container, cs *ctrState) {
	env, err := w.a.containerEnv(ctx, pod, c)
	if err != nil {
		if cs.configErr != err.Error() {
			w.a.event(pod, corev1.EventTypeWarning, eventFailed, "Error: %v", err)
		}
		cs.configErr = err.Error()
		cs.restartAt = time.Now().Add(resyncInterval)
		return
	}
	cs.configErr = ""
	attempt := 0
	if cs.id != "" {
		attempt = cs.attempt + 1
	}
	vars := envMap(env)
	argv := append(append([]string(nil), c.Command...), c.Args...)
	for i := range argv {
		argv[i] = expand(argv[i], vars)
	}
	spec := dataplane.ContainerSpec{
		ID: fmt.Sprintf("%s-%s-%d", pod.UID, c.Name, attempt),
		Labels: map[string]string{
			labelPodUID: string(pod.UID), labelPodName: pod.Name, labelPodNamespace: pod.Namespace,
			labelContainer: c.Name, labelAttempt: strconv.Itoa(attempt), labelInit: strconv.FormatBool(cs.init),
		},
		Image: c.Image, Command: argv, Env: env, WorkingDir: c.WorkingDir,
		Mounts: w.mounts(c), TTY: c.TTY, Stdin: c.Stdin,
	}
	w.netSpec(pod, &spec)
	if q, ok := c.Resources.Limits[corev1.ResourceMemory]; ok {
		spec.MemoryLimit = q.Value()
	}
	if q, ok := c.Resources.Limits[corev1.ResourceCPU]; ok {
		spec.CPUMilli = q.MilliValue()
	}
	if c.WorkingDir != "" {
		if err := os.MkdirAll(c.WorkingDir, 0o755); err != nil {
			cs.configErr = fmt.Sprintf("working dir: %v", err)
			return
		}
	}
	// Keep the previous attempt (lastState, logs --previous); drop older.
	if cs.prevID != "" {
		if err := w.a.rt.Remove(ctx, cs.prevID); err != nil {
			w.a.log.Debug("agent: remove old attempt", "container", cs.prevID, "err", err)
		}
	}
	if err := w.a.rt.Start(ctx, spec); err != nil {
		cs.configErr = err.Error()
		cs.restartAt = time.Now().Add(resyncInterval)
		w.a.event(pod, corev1.EventTypeWarning, eventFailed, "Error: %v", err)
		return
	}
	if st, err := w.a.rt.State(spec.ID); err == nil && st.Reason == "StartError" {
		w.a.event(pod, corev1.EventTypeWarning, eventFailed, "Error: %s", st.Message)
	} else {
		w.a.event(pod, corev1.EventTypeNormal, eventCreated, "Created container %s", c.Name)
		w.a.event(pod, corev1.EventTypeNormal, eventStarted, "Started container %s", c.Name)
	}
	if cs.probes != nil {
		cs.probes.stop()
		cs.probes = nil
	}
	if cs.id != "" {
		cs.prevID = cs.id
	}
	cs.id, cs.attempt = spec.ID, attempt
	cs.restartAt = time.Time{}
	if !cs.init {
		cs.probes = startProber(ctx, w, pod, c, spec.ID)
	}
}

// stopContainer stops the current attempt with the pod's grace period.
func (w *podWorker) stopContainer(ctx context.Context, pod *corev1.Pod, cs *ctrState) {
	grace := 30 * time.Second
	if g := pod.Spec.TerminationGracePeriodSeconds; g != nil {
		grace = time.Duration(*g) * time.Second
	}
	if cs.probes != nil {
		cs.probes.stop()
		cs.probes = nil
	}
	if err := w.a.rt.Stop(ctx, cs.id, grace); err != nil {
		w.a.log.Debug("agent: stop container", "container", cs.id, "err", err)
	}
}

func (w *podWorker) stopProbes() {
	for _, cs := range w.ctrs {
		if cs.probes != nil {
			cs.probes.stop()
			cs.probes = nil
		}
	}
}

// terminate stops the pod's containers within its grace period, deletes
// the pod object (unless already gone) and removes containers and
// volumes.
func (w *podWorker) terminate(ctx context.Context, pod *corev1.Pod, gone bool) {
	w.stopProbes()
	w.adopt()
	grace := 30 * time.Second
	if g := pod.Spec.TerminationGracePeriodSeconds; g != nil {
		grace = time.Duration(*g) * time.Second
	}
	if g := pod.DeletionGracePeriodSeconds; g != nil {
		grace = time.Duration(*g) * time.Second
	}
	var wg sync.WaitGroup
	for _, cs := range w.ctrs {
		if cs.id == "" {
			continue
		}
		if st, ok := w.state(cs.id); ok && st.Status == dataplane.Running && !gone {
			w.a.event(pod, corev1.EventTypeNormal, eventKilling, "Stopping container %s", cs.name)
		}
		wg.Go(func() {
			if err := w.a.rt.Stop(ctx, cs.id, grace); err != nil {
				w.a.log.Debug("agent: stop container", "container", cs.id, "err", err)
			}
		})
	}
	wg.Wait()
	if ctx.Err() != nil {
		return // the agent is stopping; a restarted agent finishes the job
	}
	if !gone {
		zero := int64(0)
		uid := pod.UID
		err := w.a.client.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{
			GracePeriodSeconds: &zero, Preconditions: &metav1.Preconditions{UID: &uid},
		})
		if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			w.a.log.Warn("agent: delete pod", "pod", pod.Namespace+"/"+pod.Name, "err", err)
		}
	}
	list, _ := w.a.rt.List()
	for _, st := range list {
		if st.Labels[labelPodUID] == w.uid {
			if err := w.a.rt.Remove(ctx, st.ID); err != nil {
				w.a.log.Debug("agent: remove container", "container", st.ID, "err", err)
			}
		}
	}
	w.a.teardownPodNetwork(w.uid)
	w.cleanupVolumes()
}

// containerNames lists a pod's container names for messages.
func containerNames(cs []string) string { return "[" + strings.Join(cs, " ") + "]" }
