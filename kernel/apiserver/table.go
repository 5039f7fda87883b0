package apiserver

import (
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/duration"
)

// Table output (Accept: application/json;as=Table;v=v1;g=meta.k8s.io), as
// kubectl get asks for. The columns of the main kinds follow Kubernetes'
// printers (pkg/printers/internalversion); priority-1 columns are the
// extra ones of `-o wide`. Other resources get Kubernetes' default table:
// Name and Created At.

// tableDef describes a resource's columns and how to fill a row.
type tableDef struct {
	columns []metav1.TableColumnDefinition
	cells   func(obj runtime.Object, now time.Time) []any
}

func col(name, typ, desc string, priority int32) metav1.TableColumnDefinition {
	c := metav1.TableColumnDefinition{Name: name, Type: typ, Description: desc, Priority: priority}
	if name == "Name" {
		c.Format = "name"
		c.Description = metav1.ObjectMeta{}.SwaggerDoc()["name"]
	}
	return c
}

var nameColumn = col("Name", "string", "", 0)

// defaultTable is Kubernetes' DefaultTableConvertor.
var defaultTable = &tableDef{
	columns: []metav1.TableColumnDefinition{
		nameColumn,
		{Name: "Created At", Type: "date", Description: metav1.ObjectMeta{}.SwaggerDoc()["creationTimestamp"]},
	},
	cells: func(obj runtime.Object, _ time.Time) []any {
		m := accessor(obj)
		return []any{m.GetName(), m.GetCreationTimestamp().UTC().Format(time.RFC3339)}
	},
}

// includeObject modes of the Table's rows (the includeObject parameter).
const (
	includeNone     = "None"
	includeMetadata = "Metadata"
	includeObject   = "Object"
)

// tableFor renders objects as a meta.k8s.io/v1 Table.
func (s *Server) tableFor(req *request, objs []runtime.Object, r *http.Request) (*metav1.Table, error) {
	include := r.URL.Query().Get("includeObject")
	switch include {
	case "":
		include = includeMetadata
	case includeNone, includeMetadata, includeObject:
	default:
		return nil, apierrors.NewBadRequest(fmt.Sprintf("includeObject: unsupported value %q", include))
	}
	def := req.res.table
	if def == nil {
		def = defaultTable
	}
	t := &metav1.Table{
		TypeMeta:          metav1.TypeMeta{Kind: "Table", APIVersion: "meta.k8s.io/v1"},
		ColumnDefinitions: def.columns,
		Rows:              make([]metav1.TableRow, 0, len(objs)),
	}
	now := time.Now()
	for _, obj := range objs {
		row := metav1.TableRow{Cells: def.cells(obj, now)}
		switch include {
		case includeMetadata:
			raw, err := json.Marshal(partialMetadata(obj))
			if err != nil {
				return nil, err
			}
			row.Object.Raw = raw
		case includeObject:
			raw, err := json.Marshal(obj)
			if err != nil {
				return nil, err
			}
			row.Object.Raw = raw
		}
		t.Rows = append(t.Rows, row)
	}
	return t, nil
}

// age renders how long ago t was, like kubectl's AGE column.
func age(t metav1.Time, now time.Time) string {
	if t.IsZero() {
		return "<unknown>"
	}
	return duration.HumanDuration(now.Sub(t.Time))
}

// orNone is v, or "<none>" when empty.
func orNone(v string) string {
	if v == "" {
		return "<none>"
	}
	return v
}
