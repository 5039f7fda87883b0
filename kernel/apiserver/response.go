package apiserver

import (
	"net/http"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/yaml"
)

// writeObject writes one object in the negotiated representation. It uses
// st.data (the stored form) when it can, and decodes only for protobuf,
// Tables and metadata-only output. st.obj is only read.
func (s *Server) writeObject(w http.ResponseWriter, r *http.Request, req *request, code int, out output, st *stored) {
	if out == outJSON {
		writeRawJSON(w, code, storedJSON(st))
		return
	}
	obj, err := st.object(req.res)
	if err != nil {
		s.writeError(w, r, req, err)
		return
	}
	switch out {
	case outProto:
		if err := writeProto(w, code, obj); err != nil {
			s.writeError(w, r, req, apierrors.NewInternalError(err))
		}
	case outTable:
		t, err := s.tableFor(req, []runtime.Object{obj}, r)
		if err != nil {
			s.writeError(w, r, req, err)
			return
		}
		writeJSON(w, code, t)
	case outMetadata:
		writeJSON(w, code, partialMetadata(obj))
	case outYAML:
		data, err := yaml.JSONToYAML(storedJSON(st))
		if err != nil {
			s.writeError(w, r, req, apierrors.NewInternalError(err))
			return
		}
		w.Header().Set("Content-Type", mediaYAML)
		w.WriteHeader(code)
		_, _ = w.Write(data)
	}
}

// storedJSON is st's JSON with its resourceVersion.
func storedJSON(st *stored) []byte {
	if st.rev == 0 {
		return st.data
	}
	return appendWithRV(make([]byte, 0, len(st.data)+32), st.data, st.rev)
}

// object returns st's typed object, decoding the stored form if needed.
func (st *stored) object(res *resource) (runtime.Object, error) {
	if st.obj != nil {
		return st.obj, nil
	}
	obj, err := decodeStored(res, st.data, st.rev)
	if err != nil {
		return nil, err
	}
	st.obj = obj
	return obj, nil
}

func partialMetadata(obj runtime.Object) *metav1.PartialObjectMetadata {
	m := accessor(obj)
	pom := &metav1.PartialObjectMetadata{
		TypeMeta: metav1.TypeMeta{Kind: "PartialObjectMetadata", APIVersion: "meta.k8s.io/v1"},
	}
	pom.ObjectMeta = metav1.ObjectMeta{
		Name: m.GetName(), GenerateName: m.GetGenerateName(), Namespace: m.GetNamespace(), UID: m.GetUID(),
		ResourceVersion: m.GetResourceVersion(), Generation: m.GetGeneration(), CreationTimestamp: m.GetCreationTimestamp(),
		DeletionTimestamp: m.GetDeletionTimestamp(), DeletionGracePeriodSeconds: m.GetDeletionGracePeriodSeconds(),
		Labels: m.GetLabels(), Annotations: m.GetAnnotations(), OwnerReferences: m.GetOwnerReferences(),
		Finalizers: m.GetFinalizers(), ManagedFields: m.GetManagedFields(),
	}
	return pom
}
