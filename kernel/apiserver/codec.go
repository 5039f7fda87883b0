package apiserver

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"

	"github.com/munnerz/goautoneg"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer/protobuf"
	"k8s.io/client-go/kubernetes/scheme"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"

	"github.com/tugboat-dev/tugboat/kernel/store"
)

// Media types.
const (
	mediaJSON  = "application/json"
	mediaYAML  = "application/yaml"
	mediaProto = "application/vnd.kubernetes.protobuf"
)

// readBody reads the request body up to the configured limit (413 beyond).
func (s *Server) readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	if r.ContentLength > s.maxBody {
		return nil, apierrors.NewRequestEntityTooLargeError(fmt.Sprintf("limit is %d", s.maxBody))
	}
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.maxBody))
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return nil, apierrors.NewRequestEntityTooLargeError(fmt.Sprintf("limit is %d", s.maxBody))
	}
	if err != nil {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("read request body: %v", err))
	}
	return data, nil
}

// bodyMediaType returns the media type of a create/update body: JSON, YAML
// or Kubernetes protobuf (an empty Content-Type is JSON, as in Kubernetes);
// anything else is 415. client-go's generated clients send protobuf.
func bodyMediaType(r *http.Request) (string, error) {
	ct := r.Header.Get("Content-Type")
	if ct == "" {
		return mediaJSON, nil
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return "", unsupportedMediaType(ct)
	}
	switch mt {
	case mediaJSON, "application/*", "*/*":
		return mediaJSON, nil
	case mediaYAML, "application/x-yaml", "text/yaml":
		return mediaYAML, nil
	case mediaProto:
		return mediaProto, nil
	}
	return "", unsupportedMediaType(ct)
}

// protoCodec decodes Kubernetes protobuf (the "k8s\x00" envelope) for the
// built-in types registered in client-go's scheme.
var protoCodec = protobuf.NewSerializer(scheme.Scheme, scheme.Scheme)

// decodeBody decodes a request body of the given media type into a new
// object of kind gvk; see decodeObject for JSON and YAML. Protobuf has no
// unknown-field detection, so fieldValidation does not apply to it.
func decodeBody(data []byte, media string, gvk schema.GroupVersionKind, newObj func() runtime.Object, mode string) (runtime.Object, []string, error) {
	if media != mediaProto {
		data, err := toJSON(data, media)
		if err != nil {
			return nil, nil, err
		}
		return decodeObject(data, gvk, newObj, mode)
	}
	obj, got, err := protoCodec.Decode(data, &gvk, newObj())
	if err != nil {
		return nil, nil, apierrors.NewBadRequest(fmt.Sprintf("decode protobuf %s: %v", gvk.Kind, err))
	}
	if got == nil || got.Kind != gvk.Kind || (got.GroupVersion() != gvk.GroupVersion() && gvk.Group != metav1.GroupName) {
		return nil, nil, apierrors.NewBadRequest(fmt.Sprintf("the object in the data (%v) is not the expected %v", got, gvk))
	}
	obj.GetObjectKind().SetGroupVersionKind(gvk)
	return obj, nil, nil
}

// toJSON converts a body of the given media type to JSON.
func toJSON(data []byte, media string) ([]byte, error) {
	if media != mediaYAML {
		return data, nil
	}
	out, err := yaml.YAMLToJSONStrict(data)
	if err != nil {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("decode yaml body: %v", err))
	}
	return out, nil
}

// fieldValidation modes (the fieldValidation query parameter).
const (
	validationIgnore = metav1.FieldValidationIgnore
	validationWarn   = metav1.FieldValidationWarn
	validationStrict = metav1.FieldValidationStrict
)

// parseFieldValidation reads the fieldValidation parameter; the default is
// Warn, as in Kubernetes.
func parseFieldValidation(q map[string][]string) (string, error) {
	v := ""
	if vs := q["fieldValidation"]; len(vs) > 0 {
		v = vs[0]
	}
	switch v {
	case "":
		return validationWarn, nil
	case validationIgnore, validationWarn, validationStrict:
		return v, nil
	}
	return "", apierrors.NewBadRequest(fmt.Sprintf("fieldValidation must be one of %q, %q or %q, got %q", validationIgnore, validationWarn, validationStrict, v))
}

// decodeObject decodes a JSON body into a new object of kind gvk (built by
// newObj). kind and apiVersion, when present, must match. Unknown and
// duplicate fields are handled per the fieldValidation mode: Strict fails
// with 400, Warn returns them as warnings, Ignore drops them.
func decodeObject(data []byte, gvk schema.GroupVersionKind, newObj func() runtime.Object, mode string) (runtime.Object, []string, error) {
	if err := checkTypeMeta(data, gvk); err != nil {
		return nil, nil, err
	}
	obj := newObj()
	strictErrs, err := kjson.UnmarshalStrict(data, obj)
	if err != nil {
		return nil, nil, apierrors.NewBadRequest(fmt.Sprintf("decode %s: %v", gvk.Kind, err))
	}
	obj.GetObjectKind().SetGroupVersionKind(gvk)
	if len(strictErrs) == 0 || mode == validationIgnore {
		return obj, nil, nil
	}
	msgs := make([]string, len(strictErrs))
	for i, e := range strictErrs {
		msgs[i] = e.Error()
	}
	if mode == validationStrict {
		return nil, nil, apierrors.NewBadRequest("strict decoding error: " + strings.Join(msgs, ", "))
	}
	return obj, msgs, nil
}

// checkTypeMeta rejects a body whose kind or apiVersion names another type.
func checkTypeMeta(data []byte, gvk schema.GroupVersionKind) error {
	var tm metav1.TypeMeta
	if err := json.Unmarshal(data, &tm); err != nil {
		return apierrors.NewBadRequest(fmt.Sprintf("decode request body: %v", err))
	}
	// Option kinds (DeleteOptions) are registered in every group version.
	if tm.APIVersion != "" && tm.APIVersion != gvk.GroupVersion().String() && gvk.Group != metav1.GroupName {
		return apierrors.NewBadRequest(fmt.Sprintf("the API version in the data (%s) does not match the expected API version (%s)",
			tm.APIVersion, gvk.GroupVersion().String()))
	}
	if tm.Kind != "" && tm.Kind != gvk.Kind {
		return apierrors.NewBadRequest(fmt.Sprintf("the kind in the data (%s) does not match the expected kind (%s)", tm.Kind, gvk.Kind))
	}
	return nil
}

// addWarnings adds Warning headers (RFC 7234 299) for msgs.
func addWarnings(w http.ResponseWriter, msgs []string) {
	for _, m := range msgs {
		w.Header().Add("Warning", fmt.Sprintf("299 - %q", m))
	}
}

// output is the representation a client asked for.
type output int

const (
	outJSON output = iota
	outYAML
	outTable
	outMetadata
	outProto
)

// negotiate picks the response representation from the Accept header:
// JSON (the default), YAML, Kubernetes protobuf, a meta.k8s.io/v1 Table,
// or PartialObjectMetadata (the last two in JSON only); 406 if none is
// acceptable. client-go's typed clients ask for protobuf first.
func negotiate(r *http.Request) (output, error) {
	accept := r.Header.Get("Accept")
	if accept == "" {
		return outJSON, nil
	}
	for _, c := range goautoneg.ParseAccept(accept) {
		if c.Q <= 0 {
			continue
		}
		switch {
		case c.Type == "*" || (c.Type == "application" && c.SubType == "*"):
			return outJSON, nil
		case c.Type != "application":
			continue
		case c.SubType == "yaml" && len(c.Params) == 0:
			return outYAML, nil
		case c.SubType == "vnd.kubernetes.protobuf":
			if _, as := c.Params["as"]; !as {
				return outProto, nil
			}
			continue
		case c.SubType != "json":
			continue
		}
		as, g, v := c.Params["as"], c.Params["g"], c.Params["v"]
		switch {
		case as == "":
			return outJSON, nil
		case g == metav1.GroupName && v == "v1" && as == "Table":
			return outTable, nil
		case g == metav1.GroupName && v == "v1" && (as == "PartialObjectMetadata" || as == "PartialObjectMetadataList"):
			return outMetadata, nil
		}
	}
	return outJSON, notAcceptable(accept)
}

// objectKey is the store key of an object.
func objectKey(res *resource, namespace, name string) string {
	if !res.namespaced {
		namespace = ""
	}
	return store.Key(res.storage, namespace, name)
}

// objectPrefix is the store prefix of a resource, optionally in one
// namespace.
func objectPrefix(res *resource, namespace string) string {
	if !res.namespaced {
		namespace = ""
	}
	return store.Prefix(res.storage, namespace)
}
