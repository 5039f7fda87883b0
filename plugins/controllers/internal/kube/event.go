package kube

import (
	"time"

	"github.com/tugboat-dev/tugboat/sdk"
	"github.com/tugboat-dev/tugboat/sdk/rawjson"
)

// Involved names the object an Event is about.
type Involved struct {
	APIVersion, Kind string
	Meta             *Meta
}

// RecordEvent creates a core/v1 Event about obj from component (best
// effort: an Event that cannot be written is dropped, as client-go's
// recorder does). typ is "Normal" or "Warning".
func RecordEvent(obj Involved, component, typ, reason, message string, now time.Time) {
	_, _ = sdk.CreateObject("events", obj.Meta.Namespace, AppendEvent(nil, obj, component, typ, reason, message, now))
}

// AppendEvent appends the JSON of the Event RecordEvent writes.
func AppendEvent(b []byte, obj Involved, component, typ, reason, message string, now time.Time) []byte {
	ts := FormatTime(now)
	m := obj.Meta
	b = append(b, `{"apiVersion":"v1","kind":"Event","metadata":{"generateName":`...)
	b = rawjson.AppendString(b, m.Name+".")
	b = append(b, `,"namespace":`...)
	b = rawjson.AppendString(b, m.Namespace)
	b = append(b, `},"involvedObject":{"apiVersion":`...)
	b = rawjson.AppendString(b, obj.APIVersion)
	b = append(b, `,"kind":`...)
	b = rawjson.AppendString(b, obj.Kind)
	b = append(b, `,"namespace":`...)
	b = rawjson.AppendString(b, m.Namespace)
	b = append(b, `,"name":`...)
	b = rawjson.AppendString(b, m.Name)
	b = append(b, `,"uid":`...)
	b = rawjson.AppendString(b, m.UID)
	b = append(b, `},"type":`...)
	b = rawjson.AppendString(b, typ)
	b = append(b, `,"reason":`...)
	b = rawjson.AppendString(b, reason)
	b = append(b, `,"message":`...)
	b = rawjson.AppendString(b, message)
	b = append(b, `,"source":{"component":`...)
	b = rawjson.AppendString(b, component)
	b = append(b, `},"count":1,"firstTimestamp":`...)
	b = rawjson.AppendString(b, ts)
	b = append(b, `,"lastTimestamp":`...)
	b = rawjson.AppendString(b, ts)
	return append(b, '}')
}
