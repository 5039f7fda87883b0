package scheduler

import (
	"container/heap"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// Queue defaults (kube-scheduler's).
const (
	DefaultInitialBackoff = time.Second
	DefaultMaxBackoff     = 10 * time.Second
	// maxUnschedulable is how long a pod waits in the unschedulable set
	// without an event before it is retried anyway.
	maxUnschedulable = 5 * time.Minute
)

// where a queued pod is.
type where uint8

const (
	inActive where = iota + 1
	inBackoff
	inUnschedulable
	inFlight // being scheduled or bound
)

// qpod is a pod waiting for a node.
type qpod struct {
	key      podKey
	pod      *corev1.Pod
	where    where
	seq      uint64 // queue order among equal priorities
	attempts int
	// backoffUntil: not retried before this time.
	backoffUntil time.Time
	// unschedSince: when it entered the unschedulable set.
	unschedSince time.Time
	heapIndex    int
	// dirty: the pod changed while in flight; retry at once if it fails.
	dirty bool
}

func priority(p *corev1.Pod) int32 {
	if p.Spec.Priority != nil {
		return *p.Spec.Priority
	}
	return 0
}

// activeHeap orders by priority (high first), then age.
type activeHeap []*qpod

func (h activeHeap) Len() int { return len(h) }
func (h activeHeap) Less(i, j int) bool {
	pi, pj := priority(h[i].pod), priority(h[j].pod)
	if pi != pj {
		return pi > pj
	}
	return h[i].seq < h[j].seq
}
func (h activeHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].heapIndex = i
	h[j].heapIndex = j
}
func (h *activeHeap) Push(x any) {
	q := x.(*qpod)
	q.heapIndex = len(*h)
	*h = append(*h, q)
}
func (h *activeHeap) Pop() any {
	old := *h
	q := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	q.heapIndex = -1
	return q
}

// backoffHeap orders by backoff expiry.
type backoffHeap []*qpod

func (h backoffHeap) Len() int           { return len(h) }
func (h backoffHeap) Less(i, j int) bool { return h[i].backoffUntil.Before(h[j].backoffUntil) }
func (h backoffHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].heapIndex = i
	h[j].heapIndex = j
}
func (h *backoffHeap) Push(x any) {
	q := x.(*qpod)
	q.heapIndex = len(*h)
	*h = append(*h, q)
}
func (h *backoffHeap) Pop() any {
	old := *h
	q := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	q.heapIndex = -1
	return q
}

// queue holds the pods waiting for a node: active (ready now), backoff
// (retried after their backoff), unschedulable (retried when the cluster
// changes). Not safe for concurrent use.
type queue struct {
	pods     map[podKey]*qpod
	active   activeHeap
	backoff  backoffHeap
	unsched  map[*qpod]bool
	seq      uint64
	initial  time.Duration
	maxDelay time.Duration
	lastScan time.Time
}

func newQueue(initial, maxDelay time.Duration) *queue {
	return &queue{pods: map[podKey]*qpod{}, unsched: map[*qpod]bool{}, initial: initial, maxDelay: maxDelay}
}

// add enqueues a new pod or updates a queued one. An updated pod that was
// unschedulable becomes eligible again (after its backoff).
func (q *queue) add(pod *corev1.Pod, now time.Time) {
	key := podKey{pod.Namespace, pod.Name}
	if e := q.pods[key]; e != nil {
		e.pod = pod
		switch e.where {
		case inFlight:
			e.dirty = true
		case inUnschedulable:
			delete(q.unsched, e)
			q.requeue(e, now)
		}
		return
	}
	q.seq++
	e := &qpod{key: key, pod: pod, seq: q.seq}
	q.pods[key] = e
	e.where = inActive
	heap.Push(&q.active, e)
}

// remove forgets a pod.
func (q *queue) remove(key podKey) {
	e := q.pods[key]
	if e == nil {
		return
	}
	q.detach(e)
	delete(q.pods, key)
}

// detach takes e out of whichever structure holds it.
func (q *queue) detach(e *qpod) {
	switch e.where {
	case inActive:
		heap.Remove(&q.active, e.heapIndex)
	case inBackoff:
		heap.Remove(&q.backoff, e.heapIndex)
	case inUnschedulable:
		delete(q.unsched, e)
	}
	e.where = 0
}

// backoffDelay is initial * 2^(attempts-1), capped.
func (q *queue) backoffDelay(attempts int) time.Duration {
	d := q.initial
	for i := 1; i < attempts && d < q.maxDelay; i++ {
		d *= 2
	}
	return min(d, q.maxDelay)
}

// requeue puts e in backoff (or active, if its backoff is over).
func (q *queue) requeue(e *qpod, now time.Time) {
	if e.backoffUntil.After(now) {
		e.where = inBackoff
		heap.Push(&q.backoff, e)
		return
	}
	e.where = inActive
	heap.Push(&q.active, e)
}

// failed returns an in-flight pod after an attempt: unschedulable ones
// wait for a cluster change, errors go to backoff.
func (q *queue) failed(e *qpod, unschedulable bool, now time.Time) {
	e.attempts++
	e.backoffUntil = now.Add(q.backoffDelay(e.attempts))
	if e.dirty {
		e.dirty = false
		q.requeue(e, now)
		return
	}
	if unschedulable {
		e.where = inUnschedulable
		e.unschedSince = now
		q.unsched[e] = true
		return
	}
	e.where = inBackoff
	heap.Push(&q.backoff, e)
}

// moveAll makes every unschedulable pod eligible again (a node was added
// or changed, a bound pod went away).
func (q *queue) moveAll(now time.Time) {
	for e := range q.unsched {
		delete(q.unsched, e)
		q.requeue(e, now)
	}
}

// pop returns the next pod to schedule, marking it in flight, or nil and
// when to look again (zero: wait for an event).
func (q *queue) pop(now time.Time) (*qpod, time.Time) {
	for len(q.backoff) > 0 && !q.backoff[0].backoffUntil.After(now) {
		e := heap.Pop(&q.backoff).(*qpod)
		e.where = inActive
		heap.Push(&q.active, e)
	}
	if now.Sub(q.lastScan) >= time.Second {
		q.lastScan = now
		for e := range q.unsched {
			if now.Sub(e.unschedSince) >= maxUnschedulable {
				delete(q.unsched, e)
				q.requeue(e, now)
			}
		}
	}
	if len(q.active) > 0 {
		e := heap.Pop(&q.active).(*qpod)
		e.where = inFlight
		e.dirty = false
		return e, time.Time{}
	}
	var next time.Time
	if len(q.backoff) > 0 {
		next = q.backoff[0].backoffUntil
	}
	if len(q.unsched) > 0 {
		t := now.Add(maxUnschedulable / 10)
		if next.IsZero() || t.Before(next) {
			next = t
		}
	}
	return nil, next
}
