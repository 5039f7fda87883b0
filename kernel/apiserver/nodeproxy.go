package apiserver

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

// The pod subresources a node serves (log, exec, attach, portforward) are
// proxied to the node's agent, as kube-apiserver proxies them to the
// kubelet: the server looks up the pod's node and hands the request, with
// the kubelet API path (/containerLogs/<ns>/<pod>/<container>,
// /exec/<ns>/<pod>/<container>, ...), to the handler a NodeConnector
// returns for that node — the in-process agent's handler for the local
// node, an HTTPS reverse proxy to <InternalIP>:<kubelet port> for others.
// Upgraded connections (exec) work because the handler gets the client's
// own ResponseWriter.

// NodeConnector returns the handler serving the kubelet API of node.
type NodeConnector func(ctx context.Context, node *corev1.Node) (http.Handler, error)

// nodeConnectors holds each Server's connector (kept beside the Server
// so that wiring it needs no change to the Server struct).
var nodeConnectors sync.Map // *Server -> NodeConnector

// SetNodeConnector sets how the server reaches node agents (nil: not
// at all); until it is set, node subresources are not served (pods/log
// answers 501, pods/exec and nodes/proxy 404).
func (s *Server) SetNodeConnector(c NodeConnector) {
	if c == nil {
		nodeConnectors.Delete(s)
		return
	}
	nodeConnectors.Store(s, c)
}

// connector returns the server's node connector.
func (s *Server) connector() (NodeConnector, bool) {
	v, ok := nodeConnectors.Load(s)
	if !ok {
		return nil, false
	}
	return v.(NodeConnector), true
}

// nodeHandler returns the kubelet API handler of the pod's node.
func (s *Server) nodeHandler(ctx context.Context, pod *corev1.Pod) (http.Handler, error) {
	if pod.Spec.NodeName == "" {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("pod %s does not have a host assigned", pod.Name))
	}
	connect, ok := s.connector()
	if !ok {
		return nil, apierrors.NewGenericServerResponse(http.StatusNotImplemented, "get", corev1.Resource("pods"), pod.Name,
			"pods' logs and streams are served by node agents, and this server has no way to reach them", 0, false)
	}
	res := s.reg.lookup("", "v1", "nodes")
	kv, err := s.store.Get(ctx, objectKey(res, "", pod.Spec.NodeName))
	if err != nil {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("node %q of pod %s: %v", pod.Spec.NodeName, pod.Name, err))
	}
	obj, err := decodeStored(res, kv.Value, kv.ModRevision)
	if err != nil {
		return nil, err
	}
	h, err := connect(ctx, obj.(*corev1.Node))
	if err != nil {
		return nil, apierrors.NewServiceUnavailable(fmt.Sprintf("node %s: %v", pod.Spec.NodeName, err))
	}
	return h, nil
}

// podFor reads the request's pod.
func (s *Server) podFor(ctx context.Context, req *request) (*corev1.Pod, error) {
	kv, err := s.store.Get(ctx, req.key())
	if err != nil {
		return nil, err
	}
	obj, err := decodeStored(req.res, kv.Value, kv.ModRevision)
	if err != nil {
		return nil, err
	}
	return obj.(*corev1.Pod), nil
}

// containerFor picks the request's container: the one named, else the
// pod's only container; an error lists the choices.
func containerFor(pod *corev1.Pod, name string) (string, error) {
	var all []string
	for _, c := range pod.Spec.InitContainers {
		all = append(all, c.Name)
	}
	for _, c := range pod.Spec.Containers {
		all = append(all, c.Name)
	}
	for _, c := range pod.Spec.EphemeralContainers {
		all = append(all, c.Name)
	}
	if name == "" {
		if len(pod.Spec.Containers) == 1 {
			return pod.Spec.Containers[0].Name, nil
		}
		var main []string
		for _, c := range pod.Spec.Containers {
			main = append(main, c.Name)
		}
		return "", apierrors.NewBadRequest(fmt.Sprintf("a container name must be specified for pod %s, choose one of: [%s]", pod.Name, strings.Join(main, " ")))
	}
	for _, c := range all {
		if c == name {
			return name, nil
		}
	}
	return "", apierrors.NewBadRequest(fmt.Sprintf("container %s is not valid for pod %s", name, pod.Name))
}

// logParams are the pods/log query parameters the kubelet API takes.
var logParams = []string{"follow", "previous", "sinceSeconds", "sinceTime", "timestamps", "tailLines", "limitBytes"}

// serveNodeLog proxies pods/log to the pod's node.
func (s *Server) serveNodeLog(w http.ResponseWriter, r *http.Request, req *request) {
	pod, err := s.podFor(r.Context(), req)
	if err != nil {
		s.writeError(w, r, req, err)
		return
	}
	ctr, err := containerFor(pod, req.query.Get("container"))
	if err != nil {
		s.writeError(w, r, req, err)
		return
	}
	h, err := s.nodeHandler(r.Context(), pod)
	if err != nil {
		s.writeError(w, r, req, err)
		return
	}
	q := url.Values{}
	for _, k := range logParams {
		if v, ok := req.query[k]; ok {
			q[k] = v
		}
	}
	s.proxyNode(w, r, h, "/containerLogs/"+pod.Namespace+"/"+pod.Name+"/"+ctr, q)
}

// proxyNode serves r with h at the kubelet API path.
func (s *Server) proxyNode(w http.ResponseWriter, r *http.Request, h http.Handler, path string, q url.Values) {
	r2 := r.Clone(r.Context())
	r2.URL = &url.URL{Path: path, RawQuery: q.Encode()}
	r2.RequestURI = r2.URL.RequestURI()
	h.ServeHTTP(&upgradable{ResponseWriter: w}, r2)
}

// upgradable exposes the connection under the server's response
// wrappers (which have Unwrap but not Hijack) to handlers that hijack it
// for WebSocket and SPDY upgrades.
type upgradable struct {
	http.ResponseWriter
}

func (u *upgradable) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return http.NewResponseController(u.ResponseWriter).Hijack()
}

func (u *upgradable) Flush() { http.NewResponseController(u.ResponseWriter).Flush() }

func (u *upgradable) Unwrap() http.ResponseWriter { return u.ResponseWriter }

// nodeStreams are the upgraded pod subresources.
var nodeStreams = map[string]string{"exec": "/exec/", "attach": "/attach/", "portforward": "/portForward/"}

// serveNodeStream serves pods/exec, pods/attach and pods/portforward
// (which the resource router does not know) by proxying them to the
// pod's node, and nodes/<name>/proxy/...; it reports whether the path was
// one of them. Without a NodeConnector they are not served.
func (s *Server) serveNodeStream(w http.ResponseWriter, r *http.Request) bool {
	parts := splitPath(r.URL.Path)
	if _, ok := s.connector(); !ok {
		return false
	}
	if len(parts) >= 5 && parts[0] == "api" && parts[1] == "v1" && parts[2] == "nodes" && parts[4] == "proxy" {
		s.serveNodeProxy(w, r, parts[3], "/"+strings.Join(parts[5:], "/"))
		return true
	}
	// api v1 namespaces <ns> pods <name> <sub>
	if len(parts) != 7 || parts[0] != "api" || parts[1] != "v1" || parts[2] != "namespaces" || parts[4] != "pods" {
		return false
	}
	prefix, ok := nodeStreams[parts[6]]
	if !ok {
		return false
	}
	res := s.reg.lookup("", "v1", "pods")
	req := &request{verb: strings.ToLower(r.Method), res: res, namespace: parts[3], name: parts[5], subresource: parts[6], query: r.URL.Query()}
	if r.Method != http.MethodGet && r.Method != http.MethodPost {
		s.writeError(w, r, req, methodNotAllowed(req, r.Method))
		return true
	}
	pod, err := s.podFor(r.Context(), req)
	if err != nil {
		s.writeError(w, r, req, err)
		return true
	}
	target := prefix + pod.Namespace + "/" + pod.Name
	if parts[6] != "portforward" {
		ctr, err := containerFor(pod, req.query.Get("container"))
		if err != nil {
			s.writeError(w, r, req, err)
			return true
		}
		target += "/" + ctr
	}
	h, err := s.nodeHandler(r.Context(), pod)
	if err != nil {
		s.writeError(w, r, req, err)
		return true
	}
	q := r.URL.Query()
	q.Del("container")
	s.proxyNode(w, r, h, target, q)
	return true
}

// serveNodeProxy serves nodes/<name>/proxy/<path> (e.g. stats/summary
// for resource metrics) from the node's agent. Nodes may not use it.
func (s *Server) serveNodeProxy(w http.ResponseWriter, r *http.Request, name, path string) {
	res := s.reg.lookup("", "v1", "nodes")
	req := &request{verb: strings.ToLower(r.Method), res: res, name: name, subresource: "proxy", query: r.URL.Query()}
	if u, ok := UserFrom(r.Context()); ok {
		if _, isNode := nodeName(u); isNode {
			s.writeError(w, r, req, apierrors.NewForbidden(res.groupResource(), name, fmt.Errorf("nodes may not use nodes/proxy")))
			return
		}
	}
	kv, err := s.store.Get(r.Context(), objectKey(res, "", name))
	if err != nil {
		s.writeError(w, r, req, err)
		return
	}
	obj, err := decodeStored(res, kv.Value, kv.ModRevision)
	if err != nil {
		s.writeError(w, r, req, err)
		return
	}
	connect, ok := s.connector()
	if !ok {
		s.writeError(w, r, req, apierrors.NewGenericServerResponse(http.StatusNotImplemented, "get", res.groupResource(), name,
			"this server has no way to reach node agents", 0, false))
		return
	}
	h, err := connect(r.Context(), obj.(*corev1.Node))
	if err != nil {
		s.writeError(w, r, req, apierrors.NewServiceUnavailable(fmt.Sprintf("node %s: %v", name, err)))
		return
	}
	s.proxyNode(w, r, h, path, r.URL.Query())
}
