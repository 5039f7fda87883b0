package agent

import (
	"context"
	"fmt"
	"sync"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// podSource is an informer over the pods bound to one node.
type podSource struct {
	inf    cache.SharedIndexInformer
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// startPodSource starts the informer and waits for its cache; handle gets
// every add, update and delete.
func startPodSource(ctx context.Context, client kubernetes.Interface, node string, handle func(context.Context, *corev1.Pod, bool)) (*podSource, error) {
	sel := fields.OneTermEqualSelector("spec.nodeName", node).String()
	pods := client.CoreV1().Pods(metav1.NamespaceAll)
	s := &podSource{}
	s.inf = cache.NewSharedIndexInformerWithOptions(&cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			o.FieldSelector = sel
			return pods.List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.FieldSelector = sel
			return pods.Watch(ctx, o)
		},
	}, &corev1.Pod{}, cache.SharedIndexInformerOptions{})
	if err := s.inf.SetTransform(func(obj any) (any, error) {
		if m, ok := obj.(metav1.Object); ok {
			m.SetManagedFields(nil)
		}
		return obj, nil
	}); err != nil {
		return nil, err
	}
	ctx, s.cancel = context.WithCancel(ctx)
	if _, err := s.inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { handle(ctx, obj.(*corev1.Pod), false) },
		UpdateFunc: func(_, obj any) { handle(ctx, obj.(*corev1.Pod), false) },
		DeleteFunc: func(obj any) {
			if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = d.Obj
			}
			if p, ok := obj.(*corev1.Pod); ok {
				handle(ctx, p, true)
			}
		},
	}); err != nil {
		s.cancel()
		return nil, err
	}
	s.wg.Go(func() { s.inf.RunWithContext(ctx) })
	if !cache.WaitForCacheSync(ctx.Done(), s.inf.HasSynced) {
		s.stop()
		return nil, fmt.Errorf("agent: pod cache did not sync: %w", ctx.Err())
	}
	return s, nil
}

func (s *podSource) stop() {
	s.cancel()
	s.wg.Wait()
}

// list returns the cached pods.
func (s *podSource) list() []*corev1.Pod {
	objs := s.inf.GetStore().List()
	out := make([]*corev1.Pod, 0, len(objs))
	for _, o := range objs {
		out = append(out, o.(*corev1.Pod))
	}
	return out
}

// get returns the cached pod with the key namespace/name.
func (s *podSource) get(namespace, name string) (*corev1.Pod, bool) {
	obj, ok, _ := s.inf.GetStore().GetByKey(namespace + "/" + name)
	if !ok {
		return nil, false
	}
	return obj.(*corev1.Pod), true
}
