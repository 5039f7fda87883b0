package agent

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tugboat-dev/tugboat/kernel/dataplane"
)

// status computes the pod's status from the runtime and the probes.
func (w *podWorker) status(pod *corev1.Pod, prepErr error) corev1.PodStatus {
	st := *pod.Status.DeepCopy()
	ip := w.a.hostIP()
	st.HostIP, st.HostIPs = ip, []corev1.HostIP{{IP: ip}}
	st.PodIP, st.PodIPs = "", nil
	if pip := w.a.podIP(pod); pip != "" { // the pod network's, else the node's
		st.PodIP, st.PodIPs = pip, []corev1.PodIP{{IP: pip}}
	}
	if st.StartTime == nil {
		t := metav1.NewTime(w.started)
		st.StartTime = &t
	}
	if terminalPhase(pod.Status.Phase) {
		// Terminal is final; only container states may still settle.
		st.InitContainerStatuses = w.containerStatuses(pod, pod.Spec.InitContainers, true, false)
		st.ContainerStatuses = w.containerStatuses(pod, pod.Spec.Containers, false, true)
		return st
	}

	initDone, initFailed := true, false
	var initWaiting string
	for _, c := range pod.Spec.InitContainers {
		cs := w.ctrs[c.Name]
		s, ok := w.stateOf(cs)
		if !ok || s.Status != dataplane.Exited || s.ExitCode != 0 {
			initDone = false
			initWaiting = c.Name
			if ok && s.Status == dataplane.Exited && s.ExitCode != 0 && pod.Spec.RestartPolicy == corev1.RestartPolicyNever {
				initFailed = true
			}
			break
		}
	}
	st.InitContainerStatuses = w.containerStatuses(pod, pod.Spec.InitContainers, true, false)
	st.ContainerStatuses = w.containerStatuses(pod, pod.Spec.Containers, false, initDone)

	pending, running, stopped, succeeded, failed := 0, 0, 0, 0, 0
	var unready []string
	for i, c := range pod.Spec.Containers {
		s := st.ContainerStatuses[i]
		switch {
		case s.State.Running != nil:
			running++
		case s.State.Terminated != nil:
			stopped++
			if s.State.Terminated.ExitCode == 0 {
				succeeded++
			} else {
				failed++
			}
		case s.LastTerminationState.Terminated != nil:
			stopped++
			if s.LastTerminationState.Terminated.ExitCode == 0 {
				succeeded++
			} else {
				failed++
			}
		default:
			pending++
		}
		if !s.Ready {
			unready = append(unready, c.Name)
		}
	}
	policy := pod.Spec.RestartPolicy
	switch {
	case initFailed:
		st.Phase = corev1.PodFailed
	case !initDone || pending > 0:
		st.Phase = corev1.PodPending
	case running > 0:
		st.Phase = corev1.PodRunning
	case policy == corev1.RestartPolicyNever && failed > 0:
		st.Phase = corev1.PodFailed
	case policy == corev1.RestartPolicyNever || (policy == corev1.RestartPolicyOnFailure && failed == 0):
		st.Phase = corev1.PodSucceeded
	default:
		st.Phase = corev1.PodRunning
	}
	if st.Phase == corev1.PodSucceeded || st.Phase == corev1.PodFailed {
		// What ran last is final now.
		st.ContainerStatuses = w.containerStatuses(pod, pod.Spec.Containers, false, true)
	}

	now := metav1.Now()
	cond := func(t corev1.PodConditionType, ok bool, reason, msg string) {
		c := corev1.PodCondition{Type: t, Status: corev1.ConditionFalse, Reason: reason, Message: msg, LastTransitionTime: now}
		if ok {
			c.Status, c.Reason, c.Message = corev1.ConditionTrue, "", ""
		}
		setPodCondition(&st, c)
	}
	cond(corev1.PodScheduled, true, "", "")
	prepMsg := ""
	if prepErr != nil {
		prepMsg = prepErr.Error()
	}
	cond(corev1.PodReadyToStartContainers, prepErr == nil && w.prepared, "VolumesNotReady", prepMsg)
	cond(corev1.PodInitialized, initDone, "ContainersNotInitialized", fmt.Sprintf("containers with incomplete status: [%s]", initWaiting))
	msg := "containers with unready status: " + containerNames(unready)
	reason := "ContainersNotReady"
	if st.Phase == corev1.PodSucceeded || st.Phase == corev1.PodFailed {
		reason = "PodCompleted"
		msg = ""
	}
	cond(corev1.ContainersReady, len(unready) == 0 && st.Phase == corev1.PodRunning, reason, msg)
	cond(corev1.PodReady, len(unready) == 0 && st.Phase == corev1.PodRunning, reason, msg)
	return st
}

func (w *podWorker) stateOf(cs *ctrState) (dataplane.State, bool) {
	if cs == nil {
		return dataplane.State{}, false
	}
	return w.state(cs.id)
}

// containerStatuses builds the statuses of a list of containers; final
// reports exited attempts as terminated even when they would restart.
func (w *podWorker) containerStatuses(pod *corev1.Pod, ctrs []corev1.Container, init, initDone bool) []corev1.ContainerStatus {
	out := make([]corev1.ContainerStatus, 0, len(ctrs))
	rt := w.a.rt.Name()
	policy := pod.Spec.RestartPolicy
	for _, c := range ctrs {
		s := corev1.ContainerStatus{Name: c.Name, Image: c.Image, ImageID: rt + "://" + c.Image}
		f := false
		s.Started = &f
		cs := w.ctrs[c.Name]
		cur, ok := w.stateOf(cs)
		if cs != nil {
			s.RestartCount = int32(cs.attempt)
			if prev, ok := w.state(cs.prevID); ok && prev.Status == dataplane.Exited {
				s.LastTerminationState = corev1.ContainerState{Terminated: terminated(rt, prev)}
			}
		}
		switch {
		case !ok:
			reason, msg := "ContainerCreating", ""
			if !init && !initDone {
				reason = "PodInitializing"
			}
			if cs != nil && cs.configErr != "" {
				reason, msg = "CreateContainerConfigError", cs.configErr
			}
			s.State.Waiting = &corev1.ContainerStateWaiting{Reason: reason, Message: msg}
		case cur.Status == dataplane.Running:
			s.ContainerID = rt + "://" + cur.ID
			s.State.Running = &corev1.ContainerStateRunning{StartedAt: metav1.NewTime(cur.StartedAt)}
			started, ready := true, true
			if init {
				ready = false
			} else if cs.probes != nil {
				started, ready = cs.probes.results()
			}
			s.Started, s.Ready = &started, ready
		default: // exited
			s.ContainerID = rt + "://" + cur.ID
			willRestart := policy == corev1.RestartPolicyAlways || policy == "" || (cur.ExitCode != 0 && policy == corev1.RestartPolicyOnFailure)
			if init {
				willRestart = cur.ExitCode != 0 && policy != corev1.RestartPolicyNever
			}
			if willRestart && !terminalPhase(pod.Status.Phase) && initDone {
				s.LastTerminationState = corev1.ContainerState{Terminated: terminated(rt, cur)}
				msg := fmt.Sprintf("back-off %s restarting failed container=%s pod=%s_%s(%s)",
					time.Until(cs.restartAt).Round(time.Second), c.Name, pod.Name, pod.Namespace, pod.UID)
				s.State.Waiting = &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff", Message: msg}
				if !time.Now().Before(cs.restartAt) {
					s.State.Waiting.Reason, s.State.Waiting.Message = "ContainerCreating", ""
				}
			} else {
				s.State.Terminated = terminated(rt, cur)
				s.Ready = init && cur.ExitCode == 0
			}
		}
		out = append(out, s)
	}
	return out
}

func terminated(rt string, s dataplane.State) *corev1.ContainerStateTerminated {
	return &corev1.ContainerStateTerminated{
		ExitCode: int32(s.ExitCode), Reason: s.Reason, Message: s.Message,
		StartedAt: metav1.NewTime(s.StartedAt), FinishedAt: metav1.NewTime(s.FinishedAt),
		ContainerID: rt + "://" + s.ID,
	}
}

// setPodCondition sets c, keeping the transition time when the status did
// not change.
func setPodCondition(st *corev1.PodStatus, c corev1.PodCondition) {
	for i, cur := range st.Conditions {
		if cur.Type == c.Type {
			if cur.Status == c.Status {
				c.LastTransitionTime = cur.LastTransitionTime
			}
			st.Conditions[i] = c
			return
		}
	}
	st.Conditions = append(st.Conditions, c)
}

// writeStatus writes status unless the pod already has it.
func (w *podWorker) writeStatus(ctx context.Context, pod *corev1.Pod, status corev1.PodStatus) error {
	if apiequality.Semantic.DeepEqual(normalize(pod.Status), normalize(status)) {
		return nil
	}
	if pod.ResourceVersion == w.wroteOn {
		// The cache has not caught up with the last write yet; its
		// update event wakes the worker again.
		return nil
	}
	p := pod.DeepCopy()
	p.Status = status
	_, err := w.a.client.CoreV1().Pods(p.Namespace).UpdateStatus(ctx, p, metav1.UpdateOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err == nil {
		w.wroteOn = pod.ResourceVersion
	}
	return err
}

// normalize truncates times to seconds (their wire precision) so a status
// read back compares equal to the one computed.
func normalize(st corev1.PodStatus) corev1.PodStatus {
	st = *st.DeepCopy()
	tr := func(t *metav1.Time) { *t = metav1.NewTime(t.Time.Truncate(time.Second)) }
	if st.StartTime != nil {
		tr(st.StartTime)
	}
	for i := range st.Conditions {
		tr(&st.Conditions[i].LastTransitionTime)
		tr(&st.Conditions[i].LastProbeTime)
	}
	for _, list := range [][]corev1.ContainerStatus{st.InitContainerStatuses, st.ContainerStatuses} {
		for i := range list {
			for _, s := range []*corev1.ContainerState{&list[i].State, &list[i].LastTerminationState} {
				if s.Running != nil {
					tr(&s.Running.StartedAt)
				}
				if s.Terminated != nil {
					tr(&s.Terminated.StartedAt)
					tr(&s.Terminated.FinishedAt)
				}
				if s.Waiting != nil && s.Waiting.Reason == "CrashLoopBackOff" {
					s.Waiting.Message = "" // counts down; not worth a write
				}
			}
		}
	}
	return st
}
