// Package scheduler is the kernel's scheduling driver: it watches pods and
// nodes through the API (client-go informers), keeps a node snapshot and a
// scheduling queue, asks filter and score plugins (Plugin; Wasm modules or
// natively linked SDK modules, adapted outside the kernel) where each
// unbound pod fits, and binds it. It holds no policy: taints, affinity,
// resources and the rest live in the plugins.
//
// Pods are scheduled one at a time. The snapshot reaches each plugin
// incrementally (hostapi's scheduler section): every call carries only the
// changes since the generation the plugin last saw. A chosen node is
// assumed in the snapshot at once and the binding is written by a pool of
// workers, so many bindings share the store's group commit; a failed
// binding un-assumes the pod and retries it.
package scheduler

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"

	"github.com/tugboat-dev/tugboat/kernel/errdefs"
	"github.com/tugboat-dev/tugboat/kernel/leaderelect"
)

// DefaultSchedulerName is the spec.schedulerName of pods that name none.
const DefaultSchedulerName = corev1.DefaultSchedulerName

// Config configures a Scheduler.
type Config struct {
	// Client is the API the scheduler watches and writes through
	// (in-process loopback or a remote server).
	Client *rest.Config
	// Profiles serve pods by spec.schedulerName; pods naming another
	// scheduler are left alone.
	Profiles []*Profile
	// Logger; nil discards.
	Logger *slog.Logger
	// BindWorkers is the number of bindings in flight; 0 means 64.
	BindWorkers int
	// InitialBackoff and MaxBackoff bound the retry delay of pods that
	// failed; 0 means DefaultInitialBackoff, DefaultMaxBackoff.
	InitialBackoff, MaxBackoff time.Duration
	// LeaderElection, when set, makes the scheduler schedule only while
	// it holds that Lease (its Client defaults to Client, its Name to
	// DefaultLeaseName), as kube-scheduler does: of several servers on
	// one store, one schedules. Each term starts from a fresh snapshot
	// and queue.
	LeaderElection *leaderelect.Config
}

// DefaultLeaseName is the scheduler's Lease (in kube-system).
const DefaultLeaseName = "tugboat-scheduler"

// Scheduler is the driver. Create it with New and start it with Run.
type Scheduler struct {
	client   kubernetes.Interface
	profiles map[string]*Profile
	log      *slog.Logger
	workers  int

	le             *leaderelect.Config
	initial, maxBO time.Duration
	readyOnce      sync.Once
	termMu         sync.Mutex

	snap  *Snapshot
	queue *queue

	mu      sync.Mutex
	pending []event
	wake    chan struct{}

	binds  chan bindJob
	events *eventSink
	ready  chan struct{}

	bound atomic.Int64

	// nominated are the pods that preempted others and the nodes they
	// did so on (loop only).
	nominated map[podKey]nomination
}

// event is something the informers or binders report to the loop.
type event struct {
	kind eventKind
	node *corev1.Node
	pod  *corev1.Pod
	name string
	bind *bindResult
}

type eventKind uint8

const (
	evNodeSet eventKind = iota + 1
	evNodeDel
	evPodSet
	evPodDel
	evBound
)

type bindJob struct {
	pod     *corev1.Pod
	node    string
	profile string
}

type bindResult struct {
	job bindJob
	err error
}

// New validates cfg and returns a scheduler.
func New(cfg Config) (*Scheduler, error) {
	if cfg.Client == nil {
		return nil, fmt.Errorf("scheduler: no client config: %w", errdefs.ErrInvalid)
	}
	if len(cfg.Profiles) == 0 {
		return nil, fmt.Errorf("scheduler: no profiles: %w", errdefs.ErrInvalid)
	}
	rc := rest.CopyConfig(cfg.Client)
	if rc.ContentType == "" {
		rc.ContentType = "application/vnd.kubernetes.protobuf"
		rc.AcceptContentTypes = "application/vnd.kubernetes.protobuf,application/json"
	}
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("scheduler: client: %w", err)
	}
	s := &Scheduler{
		client:    client,
		profiles:  map[string]*Profile{},
		log:       cfg.Logger,
		workers:   cfg.BindWorkers,
		snap:      NewSnapshot(),
		nominated: map[podKey]nomination{},
		wake:      make(chan struct{}, 1),
		ready:     make(chan struct{}),
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.workers <= 0 {
		s.workers = 64
	}
	initial, maxDelay := cfg.InitialBackoff, cfg.MaxBackoff
	if initial <= 0 {
		initial = DefaultInitialBackoff
	}
	if maxDelay <= 0 {
		maxDelay = DefaultMaxBackoff
	}
	s.initial, s.maxBO = initial, max(initial, maxDelay)
	s.queue = newQueue(s.initial, s.maxBO)
	if cfg.LeaderElection != nil {
		le := *cfg.LeaderElection
		if le.Client == nil {
			le.Client = cfg.Client
		}
		if le.Name == "" {
			le.Name = DefaultLeaseName
		}
		if le.Logger == nil {
			le.Logger = s.log
		}
		s.le = &le
	}
	for _, p := range cfg.Profiles {
		if _, dup := s.profiles[p.name]; dup {
			return nil, fmt.Errorf("scheduler: two profiles named %q: %w", p.name, errdefs.ErrInvalid)
		}
		s.profiles[p.name] = p
	}
	return s, nil
}

// Ready is closed once the caches have synced and every plugin that may
// be called has the node table (Profile.Warm); pods are scheduled from
// then on.
func (s *Scheduler) Ready() <-chan struct{} { return s.ready }

// Bound returns the number of bindings written so far.
func (s *Scheduler) Bound() int64 { return s.bound.Load() }

// Run watches, schedules and binds until ctx ends: at once, or with
// Config.LeaderElection whenever this scheduler holds the Lease. It
// returns nil when ctx ends, or an error if the caches cannot sync
// (without leader election; with it, the term ends and the scheduler
// competes again).
func (s *Scheduler) Run(ctx context.Context) error {
	if s.le == nil {
		return s.term(ctx)
	}
	return leaderelect.Run(ctx, *s.le, func(ctx context.Context) {
		if err := s.term(ctx); err != nil && ctx.Err() == nil {
			s.log.Error("scheduler term ended", "error", err)
		}
	})
}

// term schedules until ctx ends, from a fresh snapshot and queue.
func (s *Scheduler) term(ctx context.Context) error {
	s.termMu.Lock()
	defer s.termMu.Unlock()
	s.snap = NewSnapshot()
	s.queue = newQueue(s.initial, s.maxBO)
	s.nominated = map[podKey]nomination{}
	s.mu.Lock()
	s.pending = nil
	s.mu.Unlock()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	factory := informers.NewSharedInformerFactory(s.client, 0)
	podInf := factory.Core().V1().Pods().Informer()
	nodeInf := factory.Core().V1().Nodes().Informer()
	podReg, err := podInf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { s.post(podEvent(evPodSet, o)) },
		UpdateFunc: func(_, o any) { s.post(podEvent(evPodSet, o)) },
		DeleteFunc: func(o any) { s.post(podEvent(evPodDel, o)) },
	})
	if err != nil {
		return fmt.Errorf("scheduler: pod handler: %w", err)
	}
	nodeReg, err := nodeInf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { s.post(nodeEvent(evNodeSet, o)) },
		UpdateFunc: func(_, o any) { s.post(nodeEvent(evNodeSet, o)) },
		DeleteFunc: func(o any) { s.post(nodeEvent(evNodeDel, o)) },
	})
	if err != nil {
		return fmt.Errorf("scheduler: node handler: %w", err)
	}
	factory.Start(ctx.Done())
	defer factory.Shutdown()
	// The handlers' HasSynced: every object of the initial lists has been
	// posted to the loop, so the first pass sees the whole cluster.
	if !cache.WaitForCacheSync(ctx.Done(), podReg.HasSynced, nodeReg.HasSynced) {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("scheduler: caches did not sync: %w", errdefs.ErrUnavailable)
	}
	s.events = newEventSink(ctx, s.client, s.log)
	s.binds = make(chan bindJob, 4*s.workers)
	var wg sync.WaitGroup
	for range s.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.binder(ctx)
		}()
	}
	s.log.Info("scheduler started", "profiles", len(s.profiles))
	s.loop(ctx)
	close(s.binds)
	wg.Wait()
	s.events.close()
	return nil
}

func podEvent(kind eventKind, o any) event {
	if t, ok := o.(cache.DeletedFinalStateUnknown); ok {
		o = t.Obj
	}
	p, _ := o.(*corev1.Pod)
	return event{kind: kind, pod: p}
}

func nodeEvent(kind eventKind, o any) event {
	if t, ok := o.(cache.DeletedFinalStateUnknown); ok {
		if n, ok := t.Obj.(*corev1.Node); ok {
			return event{kind: kind, node: n, name: n.Name}
		}
		return event{kind: kind, name: t.Key}
	}
	n, _ := o.(*corev1.Node)
	if n == nil {
		return event{}
	}
	return event{kind: kind, node: n, name: n.Name}
}

// post hands an event to the loop.
func (s *Scheduler) post(e event) {
	if e.kind == 0 || (e.pod == nil && (e.kind == evPodSet || e.kind == evPodDel)) {
		return
	}
	s.mu.Lock()
	s.pending = append(s.pending, e)
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// loop is the scheduling loop: apply what happened, schedule one pod,
// repeat.
func (s *Scheduler) loop(ctx context.Context) {
	var spare []event
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	warmed := false
	for ctx.Err() == nil {
		s.mu.Lock()
		evs := s.pending
		s.pending = spare[:0]
		s.mu.Unlock()
		now := time.Now()
		for i := range evs {
			s.apply(&evs[i], now)
			evs[i] = event{}
		}
		spare = evs
		if !warmed {
			warmed = true
			for _, p := range s.profiles {
				if err := p.Warm(ctx, s.snap); err != nil && ctx.Err() == nil {
					s.log.Warn("plugins not warmed", "profile", p.name, "error", err)
				}
			}
			s.readyOnce.Do(func() { close(s.ready) })
		}
		e, next := s.queue.pop(now)
		if e == nil {
			s.trim() // changes keep coming while no pod waits
			wait := time.Hour
			if !next.IsZero() {
				wait = max(time.Until(next), time.Millisecond)
			}
			timer.Reset(wait)
			select {
			case <-ctx.Done():
			case <-s.wake:
			case <-timer.C:
			}
			continue
		}
		s.scheduleOne(ctx, e)
	}
}

// responsible reports whether a profile serves pod.
func (s *Scheduler) profileFor(pod *corev1.Pod) *Profile {
	name := pod.Spec.SchedulerName
	if name == "" {
		name = DefaultSchedulerName
	}
	return s.profiles[name]
}

// apply updates the snapshot and the queue with one event.
func (s *Scheduler) apply(e *event, now time.Time) {
	switch e.kind {
	case evNodeSet:
		if s.snap.SetNode(e.node) {
			s.queue.moveAll(now)
		}
	case evNodeDel:
		s.snap.RemoveNode(e.name)
	case evPodSet:
		s.podSet(e.pod, now)
	case evPodDel:
		key := podKey{e.pod.Namespace, e.pod.Name}
		delete(s.nominated, key)
		if q := s.queue.pods[key]; q != nil && q.where == inFlight {
			q.dirty = true
			delete(s.queue.pods, key)
		} else {
			s.queue.remove(key)
		}
		if s.snap.RemovePod(e.pod.Namespace, e.pod.Name) {
			s.queue.moveAll(now)
		}
	case evBound:
		s.bindDone(e.bind, now)
	}
}

// podSet handles an added or updated pod.
func (s *Scheduler) podSet(pod *corev1.Pod, now time.Time) {
	key := podKey{pod.Namespace, pod.Name}
	terminal := pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed
	if pod.Spec.NodeName != "" || terminal {
		delete(s.nominated, key)
		if q := s.queue.pods[key]; q != nil {
			if q.where == inFlight {
				delete(s.queue.pods, key) // the binder's result finds nothing to do
			} else {
				s.queue.remove(key)
			}
		}
		s.snap.SetPod(pod)
		if terminal {
			s.queue.moveAll(now)
		}
		return
	}
	if pod.DeletionTimestamp != nil || s.profileFor(pod) == nil {
		s.queue.remove(key)
		return
	}
	s.queue.add(pod, now)
}

// scheduleOne runs one attempt for e.
func (s *Scheduler) scheduleOne(ctx context.Context, e *qpod) {
	pod := e.pod
	prof := s.profileFor(pod)
	if prof == nil {
		s.queue.remove(e.key)
		return
	}
	reserved := s.reserve(pod)
	res, err := prof.Schedule(ctx, s.snap, pod, Options{})
	for _, k := range reserved {
		s.snap.RemovePod(k.namespace, k.name)
	}
	s.trim()
	now := time.Now()
	if err != nil {
		if ctx.Err() != nil {
			return
		}
		s.log.Warn("scheduling attempt failed", "pod", pod.Namespace+"/"+pod.Name, "error", err)
		s.queue.failed(e, false, now)
		s.events.record(pod, prof.name, corev1.EventTypeWarning, "FailedScheduling", err.Error())
		s.setUnschedulable(pod, "SchedulerError", err.Error())
		return
	}
	if res.Node == "" {
		msg := res.Message
		if s.mayPreempt(pod) {
			pre, err := prof.Preempt(ctx, s.snap, pod, &res)
			switch {
			case err != nil && ctx.Err() != nil:
				return
			case err != nil:
				s.log.Warn("preemption failed", "pod", pod.Namespace+"/"+pod.Name, "error", err)
			case pre.Node != "" && len(pre.Victims) > 0:
				s.preempt(pod, prof.name, pre)
				msg += " preemption: " + strconv.Itoa(len(pre.Victims)) + " pod(s) of lower priority preempted on node " + pre.Node + "."
			}
			s.trim()
		}
		now = time.Now()
		s.queue.failed(e, true, now)
		s.events.record(pod, prof.name, corev1.EventTypeWarning, "FailedScheduling", msg)
		s.setUnschedulable(pod, corev1.PodReasonUnschedulable, msg)
		return
	}
	s.snap.assume(pod, res.Node, &res.req)
	select {
	case s.binds <- bindJob{pod: pod, node: res.Node, profile: prof.name}:
	case <-ctx.Done():
	}
}

// nomination is a pod that preempted pods on node.
type nomination struct {
	pod  *corev1.Pod
	node string
}

// reserve places, for one attempt of pod, the other pods nominated to a
// node with at least pod's priority on that node in the snapshot (as
// kube-scheduler's filters count nominated pods), so that the room their
// victims free is not taken by a less important pod. It returns the pods
// placed, to be removed after the attempt.
func (s *Scheduler) reserve(pod *corev1.Pod) []podKey {
	if len(s.nominated) == 0 {
		return nil
	}
	prio := priority(pod)
	var out []podKey
	for k, n := range s.nominated {
		if k == (podKey{pod.Namespace, pod.Name}) || priority(n.pod) < prio || s.snap.pods[k] != nil || !s.snap.HasNode(n.node) {
			continue
		}
		r := podRequests(n.pod)
		s.snap.place(n.pod, n.node, &r)
		out = append(out, k)
	}
	return out
}

// mayPreempt reports whether an unschedulable pod may evict others: its
// preemptionPolicy is not Never, and it has not already preempted pods
// that are still terminating on its nominated node (kube-scheduler's
// PodEligibleToPreemptOthers).
func (s *Scheduler) mayPreempt(pod *corev1.Pod) bool {
	if p := pod.Spec.PreemptionPolicy; p != nil && *p == corev1.PreemptNever {
		return false
	}
	nominated := pod.Status.NominatedNodeName
	if n, ok := s.nominated[podKey{pod.Namespace, pod.Name}]; ok {
		nominated = n.node
	}
	if nominated == "" {
		return true
	}
	if n := s.snap.byName[nominated]; n != nil {
		prio := priority(pod)
		for _, q := range n.pods {
			if q.terminating && q.priority < prio {
				return false
			}
		}
	}
	return true
}

// preempt carries a preemption out: the pod's status.nominatedNodeName,
// then the victims deleted (gracefully) with a Preempted event each. The
// pod waits in the queue; the victims' deletion makes it retry.
func (s *Scheduler) preempt(pod *corev1.Pod, profile string, pre Preemption) {
	s.nominated[podKey{pod.Namespace, pod.Name}] = nomination{pod: pod, node: pre.Node}
	s.log.Info("preempting", "pod", pod.Namespace+"/"+pod.Name, "node", pre.Node, "victims", len(pre.Victims))
	ns, name := pod.Namespace, pod.Name
	patch := []byte(`{"status":{"nominatedNodeName":` + strconv.Quote(pre.Node) + `}}`)
	s.events.submit(func(ctx context.Context) {
		_, err := s.client.CoreV1().Pods(ns).Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{}, "status")
		if err != nil && ctx.Err() == nil && !apierrors.IsNotFound(err) {
			s.log.Warn("nominated node not set", "pod", ns+"/"+name, "error", err)
		}
	})
	for _, v := range pre.Victims {
		s.events.submit(func(ctx context.Context) {
			opts := metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &v.UID}}
			err := s.client.CoreV1().Pods(v.Namespace).Delete(ctx, v.Name, opts)
			if err != nil && ctx.Err() == nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
				s.log.Warn("preemption victim not deleted", "pod", v.Namespace+"/"+v.Name, "error", err)
				return
			}
		})
		victim := &corev1.Pod{}
		victim.Namespace, victim.Name, victim.UID = v.Namespace, v.Name, v.UID
		s.events.record(victim, profile, corev1.EventTypeNormal, "Preempted",
			"Preempted by "+pod.Namespace+"/"+pod.Name+" on node "+pre.Node)
	}
}

// trim lets the snapshot drop changes every active plugin has seen.
func (s *Scheduler) trim() {
	m := ^uint64(0)
	for _, p := range s.profiles {
		for _, st := range p.all {
			if st.gen != 0 {
				m = min(m, st.gen)
			}
		}
	}
	if m != ^uint64(0) {
		s.snap.trim(m)
	}
}

// binder writes bindings until the channel closes.
func (s *Scheduler) binder(ctx context.Context) {
	for job := range s.binds {
		b := &corev1.Binding{
			ObjectMeta: metav1.ObjectMeta{Namespace: job.pod.Namespace, Name: job.pod.Name, UID: job.pod.UID},
			Target:     corev1.ObjectReference{Kind: "Node", Name: job.node},
		}
		err := s.client.CoreV1().Pods(job.pod.Namespace).Bind(ctx, b, metav1.CreateOptions{})
		if err == nil {
			s.bound.Add(1)
			s.events.record(job.pod, job.profile, corev1.EventTypeNormal, "Scheduled",
				"Successfully assigned "+job.pod.Namespace+"/"+job.pod.Name+" to "+job.node)
		}
		s.post(event{kind: evBound, bind: &bindResult{job: job, err: err}})
	}
}

// bindDone handles a binding's outcome. A pod the informer has meanwhile
// shown bound or deleted is no longer in flight and needs nothing.
func (s *Scheduler) bindDone(r *bindResult, now time.Time) {
	key := podKey{r.job.pod.Namespace, r.job.pod.Name}
	q := s.queue.pods[key]
	if q == nil || q.where != inFlight {
		return
	}
	if r.err == nil {
		delete(s.queue.pods, key)
		return
	}
	if s.snap.PodNode(key.namespace, key.name) == r.job.node {
		s.snap.RemovePod(key.namespace, key.name)
	}
	if apierrors.IsNotFound(r.err) {
		delete(s.queue.pods, key)
		return
	}
	s.log.Warn("binding failed", "pod", key.namespace+"/"+key.name, "node", r.job.node, "error", r.err)
	s.queue.failed(q, false, now)
}

// setUnschedulable sets the pod's PodScheduled=False condition (skipped
// when it already says the same).
func (s *Scheduler) setUnschedulable(pod *corev1.Pod, reason, msg string) {
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && c.Reason == reason && c.Message == msg {
			return
		}
	}
	s.events.patchStatus(pod, reason, msg)
}

// eventSink writes Events and status patches from a few workers, dropping
// them when it falls behind (scheduling never waits for them).
type eventSink struct {
	client kubernetes.Interface
	log    *slog.Logger
	ch     chan func(ctx context.Context)
	wg     sync.WaitGroup
	seq    atomic.Int64
}

func newEventSink(ctx context.Context, client kubernetes.Interface, log *slog.Logger) *eventSink {
	es := &eventSink{client: client, log: log, ch: make(chan func(context.Context), 8192)}
	for range 8 {
		es.wg.Add(1)
		go func() {
			defer es.wg.Done()
			for fn := range es.ch {
				if ctx.Err() == nil {
					fn(ctx)
				}
			}
		}()
	}
	return es
}

func (es *eventSink) close() {
	close(es.ch)
	es.wg.Wait()
}

func (es *eventSink) submit(fn func(context.Context)) {
	defer func() { _ = recover() }() // closed while shutting down
	select {
	case es.ch <- fn:
	default:
	}
}

// record writes a core/v1 Event about pod.
func (es *eventSink) record(pod *corev1.Pod, component, typ, reason, msg string) {
	now := metav1.Now()
	seq := es.seq.Add(1)
	ev := &corev1.Event{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: pod.Namespace,
			Name:      pod.Name + "." + strconv.FormatInt(now.UnixNano()+seq%1000, 16),
		},
		InvolvedObject: corev1.ObjectReference{
			Kind: "Pod", APIVersion: "v1", Namespace: pod.Namespace, Name: pod.Name, UID: pod.UID,
			ResourceVersion: pod.ResourceVersion,
		},
		Reason: reason, Message: msg, Type: typ, Count: 1,
		FirstTimestamp: now, LastTimestamp: now,
		Source:              corev1.EventSource{Component: component},
		ReportingController: component,
	}
	es.submit(func(ctx context.Context) {
		if _, err := es.client.CoreV1().Events(pod.Namespace).Create(ctx, ev, metav1.CreateOptions{}); err != nil && ctx.Err() == nil {
			es.log.Debug("event not recorded", "pod", pod.Namespace+"/"+pod.Name, "reason", reason, "error", err)
		}
	})
}

// patchStatus sets PodScheduled=False with reason and message.
func (es *eventSink) patchStatus(pod *corev1.Pod, reason, msg string) {
	cond := corev1.PodCondition{
		Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: reason, Message: msg,
		LastTransitionTime: metav1.Now(),
	}
	patch, err := json.Marshal(map[string]any{"status": map[string]any{"conditions": []corev1.PodCondition{cond}}})
	if err != nil {
		return
	}
	ns, name := pod.Namespace, pod.Name
	es.submit(func(ctx context.Context) {
		_, err := es.client.CoreV1().Pods(ns).Patch(ctx, name, types.StrategicMergePatchType, patch, metav1.PatchOptions{}, "status")
		if err != nil && ctx.Err() == nil && !apierrors.IsNotFound(err) {
			es.log.Debug("pod condition not set", "pod", ns+"/"+name, "error", err)
		}
	})
}
