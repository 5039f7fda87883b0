package agent

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/httpstream"
	"k8s.io/apimachinery/pkg/util/httpstream/spdy"
	"k8s.io/apimachinery/pkg/util/httpstream/wsstream"
)

// Port forwarding (kubectl port-forward) over SPDY, protocol
// portforward.k8s.io: the client opens an error and a data stream per
// connection (headers streamType, port, requestID) and the agent connects
// the data stream to the port on localhost in the pod's network — the
// host's in host network mode, the pod's namespace in bridge mode (as
// kubelet does). WebSocket requests are refused with 400, on which kubectl
// falls back to SPDY.

const portForwardProtocol = "portforward.k8s.io"

func (a *Agent) servePortForward(w http.ResponseWriter, r *http.Request) {
	pod, ok := a.pods.get(r.PathValue("namespace"), r.PathValue("pod"))
	if !ok {
		writeStatusError(w, apierrors.NewNotFound(podsResource, r.PathValue("pod")))
		return
	}
	if wsstream.IsWebSocketRequest(r) {
		writeStatusError(w, apierrors.NewBadRequest("port forwarding over WebSocket is not supported; use SPDY"))
		return
	}
	if _, err := httpstream.Handshake(r, w, []string{portForwardProtocol}); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	pf := &portForwarder{host: "127.0.0.1", netns: a.podNetNS(pod), pairs: map[string]*streamPair{}}
	conn := spdy.NewResponseUpgrader().UpgradeResponse(w, r, func(st httpstream.Stream, replySent <-chan struct{}) error {
		pf.add(st, replySent)
		return nil
	})
	if conn == nil {
		return
	}
	defer conn.Close()
	conn.SetIdleTimeout(streamIdle)
	<-conn.CloseChan()
	pf.wg.Wait()
}

// portForwarder pairs each request's streams and forwards them.
type portForwarder struct {
	host  string
	netns string // the pod's network namespace ("" = the agent's)
	mu    sync.Mutex
	pairs map[string]*streamPair
	wg    sync.WaitGroup
}

type streamPair struct {
	data, errs httpstream.Stream
	created    time.Time
}

func (pf *portForwarder) add(st httpstream.Stream, replySent <-chan struct{}) {
	id := st.Headers().Get(corev1.PortForwardRequestIDHeader)
	pf.mu.Lock()
	p := pf.pairs[id]
	if p == nil {
		p = &streamPair{created: time.Now()}
		pf.pairs[id] = p
	}
	switch st.Headers().Get(corev1.StreamType) {
	case corev1.StreamTypeError:
		p.errs = st
	case corev1.StreamTypeData:
		p.data = st
	default:
		pf.mu.Unlock()
		st.Reset()
		return
	}
	complete := p.data != nil && p.errs != nil
	if complete {
		delete(pf.pairs, id)
	}
	pf.mu.Unlock()
	if complete {
		pf.wg.Go(func() {
			<-replySent
			pf.forward(p)
		})
	}
}

// forward connects one data stream to its port.
func (pf *portForwarder) forward(p *streamPair) {
	defer p.data.Close()
	defer p.errs.Close()
	port, err := strconv.ParseUint(p.data.Headers().Get(corev1.PortHeader), 10, 16)
	if err != nil || port == 0 {
		fmt.Fprintf(p.errs, "invalid port %q", p.data.Headers().Get(corev1.PortHeader))
		return
	}
	c, err := dialIn(pf.netns, net.JoinHostPort(pf.host, strconv.Itoa(int(port))))
	if err != nil {
		fmt.Fprintf(p.errs, "error forwarding port %d: %v", port, err)
		return
	}
	defer c.Close()
	done := make(chan struct{}, 2)
	go func() {
		io.Copy(c, p.data)
		if tc, ok := c.(*net.TCPConn); ok {
			tc.CloseWrite()
		}
		done <- struct{}{}
	}()
	go func() {
		io.Copy(p.data, c)
		done <- struct{}{}
	}()
	<-done // either side finished: the deferred closes end the other
}
