package apiserver

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

// Node authorization, like Kubernetes' Node authorizer: a node agent
// (user system:node:<name> in group system:nodes) may read, but it may
// write only its own Node (and its status), its own Lease in
// kube-node-lease, the status of pods bound to it, deletions of pods bound
// to it (finalizing graceful deletion) and events. Other users are not
// restricted here.

const (
	nodesGroup     = "system:nodes"
	nodeUserPrefix = "system:node:"
)

// nodeName returns the node a user acts for, if it is a node.
func nodeName(u User) (string, bool) {
	if !slices.Contains(u.Groups, nodesGroup) {
		return "", false
	}
	name, ok := strings.CutPrefix(u.Name, nodeUserPrefix)
	return name, ok && name != ""
}

// authorizeNode returns a Forbidden error when a node user's request
// exceeds what nodes may do; nil for everything else.
func (s *Server) authorizeNode(w http.ResponseWriter, r *http.Request, req *request) error {
	ctx := r.Context()
	u, ok := UserFrom(ctx)
	if !ok {
		return nil
	}
	node, ok := nodeName(u)
	if !ok {
		return nil
	}
	switch req.verb {
	case verbGet, verbList, verbWatch:
		return nil
	}
	forbid := func(why string) error {
		return apierrors.NewForbidden(req.res.groupResource(), req.name,
			fmt.Errorf("User %q cannot %s %s: %s", u.Name, req.verb, req.res.plural, why))
	}
	switch req.res.gvk.Group + "/" + req.res.plural {
	case "/nodes":
		if req.verb == verbDelete || req.verb == verbDeleteCollection {
			return forbid("nodes may not delete nodes")
		}
		if req.verb == verbCreate {
			return s.createsOwn(req, node, r)
		}
		if req.name != node {
			return forbid("a node may only write its own Node object")
		}
		return nil
	case "coordination.k8s.io/leases":
		if req.namespace != corev1.NamespaceNodeLease {
			return forbid("a node may only write its Lease in " + corev1.NamespaceNodeLease)
		}
		if req.verb == verbCreate {
			return s.createsOwn(req, node, r)
		}
		if req.name != node {
			return forbid("a node may only write its own Lease")
		}
		return nil
	case "/events", "events.k8s.io/events":
		return nil
	case "/pods":
		switch {
		case req.verb == verbCreate && req.subresource == "":
			return forbid("nodes may not create pods")
		case req.verb == verbDeleteCollection:
			return forbid("nodes may not delete collections of pods")
		case req.subresource != "" && req.subresource != subStatus:
			return forbid("nodes may not use pods/" + req.subresource)
		case req.subresource == "" && req.verb != verbDelete:
			return forbid("nodes may only write pods' status")
		}
		pod, err := s.podFor(ctx, req)
		if err != nil {
			return nil // the request fails on its own (404)
		}
		if pod.Spec.NodeName != node {
			return forbid(fmt.Sprintf("pod %s/%s is not bound to node %s", pod.Namespace, pod.Name, node))
		}
		return nil
	}
	return forbid("nodes may not write " + req.res.plural)
}

// createsOwn checks that a node creating a Node or Lease names it after
// itself; it reads the body and puts it back for the create handler.
func (s *Server) createsOwn(req *request, node string, r *http.Request) error {
	body, err := io.ReadAll(io.LimitReader(r.Body, s.maxBody+1))
	if err != nil {
		return apierrors.NewBadRequest(err.Error())
	}
	r.Body.Close()
	r.Body = io.NopCloser(bytes.NewReader(body))
	media, err := bodyMediaType(r)
	if err != nil {
		return nil // the create handler reports it
	}
	obj, _, err := decodeBody(body, media, req.res.gvk, req.res.newObj, validationIgnore)
	if err != nil {
		return nil // likewise
	}
	if name := accessor(obj).GetName(); name != node {
		return apierrors.NewForbidden(req.res.groupResource(), name,
			fmt.Errorf("User %q may only create its own %s", nodeUserPrefix+node, req.res.gvk.Kind))
	}
	return nil
}
