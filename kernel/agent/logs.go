package agent

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/tugboat-dev/tugboat/kernel/dataplane"
)

// Handler returns the agent's kubelet API (what the API server proxies
// pods/log and pods/exec to):
//
//	GET /containerLogs/{namespace}/{pod}/{container}?follow&previous&tailLines&sinceSeconds&sinceTime&timestamps&limitBytes
//	GET|POST /exec/{namespace}/{pod}/{container}?command=...&stdin&stdout&stderr&tty
//	GET|POST /attach/{namespace}/{pod}/{container}?stdin&stdout&stderr (attach.go)
//	GET /stats/summary (stats.go)
//	POST /portForward/{namespace}/{pod} (portforward.go)
//
// Errors are metav1.Status bodies. Callers authenticate the API server
// before handing requests to it.
func (a *Agent) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /containerLogs/{namespace}/{pod}/{container}", a.serveLogs)
	mux.HandleFunc("/exec/{namespace}/{pod}/{container}", a.serveExec)
	mux.HandleFunc("/attach/{namespace}/{pod}/{container}", a.serveAttach)
	mux.HandleFunc("GET /stats/summary", a.serveStats)
	mux.HandleFunc("/portForward/{namespace}/{pod}", a.servePortForward)
	return mux
}

// writeStatus writes err as a metav1.Status.
func writeStatusError(w http.ResponseWriter, err error) {
	var se *apierrors.StatusError
	if !errors.As(err, &se) {
		se = apierrors.NewInternalError(err)
	}
	st := se.Status()
	st.Kind, st.APIVersion = "Status", "v1"
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(int(st.Code))
	json.NewEncoder(w).Encode(st)
}

// containerID finds the runtime ID of a pod's container: the current
// attempt, or the previous one.
func (a *Agent) containerID(namespace, pod, container string, previous bool) (string, error) {
	p, ok := a.pods.get(namespace, pod)
	if !ok {
		return "", apierrors.NewNotFound(podsResource, pod)
	}
	list, err := a.rt.List()
	if err != nil {
		return "", err
	}
	cur, prev := -1, -1
	var curID, prevID string
	for _, st := range list {
		if st.Labels[labelPodUID] != string(p.UID) || st.Labels[labelContainer] != container {
			continue
		}
		n, _ := strconv.Atoi(st.Labels[labelAttempt])
		switch {
		case n > cur:
			prev, prevID = cur, curID
			cur, curID = n, st.ID
		case n > prev:
			prev, prevID = n, st.ID
		}
	}
	if previous {
		if prevID == "" {
			return "", apierrors.NewBadRequest(fmt.Sprintf("previous terminated container %q in pod %q not found", container, pod))
		}
		return prevID, nil
	}
	if curID == "" {
		reason := "ContainerCreating"
		for _, s := range append(p.Status.InitContainerStatuses, p.Status.ContainerStatuses...) {
			if s.Name == container && s.State.Waiting != nil && s.State.Waiting.Reason != "" {
				reason = s.State.Waiting.Reason
			}
		}
		return "", apierrors.NewBadRequest(fmt.Sprintf("container %q in pod %q is waiting to start: %s", container, pod, reason))
	}
	return curID, nil
}

// logOptions are the parsed containerLogs parameters.
type logOptions struct {
	follow, timestamps bool
	tail               int64 // -1: all
	since              time.Time
	limit              int64 // 0: none
}

func parseLogOptions(r *http.Request) (logOptions, error) {
	q := r.URL.Query()
	o := logOptions{tail: -1}
	b := func(k string) bool { v, _ := strconv.ParseBool(q.Get(k)); return v }
	o.follow, o.timestamps = b("follow"), b("timestamps")
	if v := q.Get("tailLines"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return o, apierrors.NewBadRequest("tailLines: invalid value " + strconv.Quote(v))
		}
		o.tail = n
	}
	if v := q.Get("limitBytes"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 1 {
			return o, apierrors.NewBadRequest("limitBytes: invalid value " + strconv.Quote(v))
		}
		o.limit = n
	}
	if v := q.Get("sinceSeconds"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 1 {
			return o, apierrors.NewBadRequest("sinceSeconds: invalid value " + strconv.Quote(v))
		}
		o.since = time.Now().Add(-time.Duration(n) * time.Second)
	}
	if v := q.Get("sinceTime"); v != "" {
		t, err := time.Parse(time.RFC3339, v)
		if err != nil {
			return o, apierrors.NewBadRequest("sinceTime: invalid value " + strconv.Quote(v))
		}
		o.since = t
	}
	return o, nil
}

func (a *Agent) serveLogs(w http.ResponseWriter, r *http.Request) {
	o, err := parseLogOptions(r)
	if err != nil {
		writeStatusError(w, err)
		return
	}
	previous, _ := strconv.ParseBool(r.URL.Query().Get("previous"))
	id, err := a.containerID(r.PathValue("namespace"), r.PathValue("pod"), r.PathValue("container"), previous)
	if err != nil {
		writeStatusError(w, err)
		return
	}
	f, err := os.Open(a.rt.LogPath(id))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		writeStatusError(w, err)
		return
	}
	w.Header().Set("Content-Type", "text/plain")
	w.WriteHeader(http.StatusOK)
	if f == nil {
		return
	}
	defer f.Close()
	lw := &limitWriter{w: w, left: o.limit}
	if o.limit == 0 {
		lw.left = -1
	}
	rc := http.NewResponseController(w)
	offset := writeLog(f, lw, o)
	rc.Flush()
	if !o.follow || previous {
		return
	}
	a.followLog(r.Context(), f, offset, id, lw, rc, o)
}

// writeLog writes the complete lines of f (from its start) that pass o's
// since and tail filters and returns the offset after them.
func writeLog(f *os.File, w io.Writer, o logOptions) int64 {
	data, err := io.ReadAll(f)
	if err != nil {
		return 0
	}
	end := bytes.LastIndexByte(data, '\n') + 1
	data = data[:end]
	lines := bytes.SplitAfter(data, []byte{'\n'})
	if len(lines) > 0 && len(lines[len(lines)-1]) == 0 {
		lines = lines[:len(lines)-1]
	}
	if !o.since.IsZero() {
		i := 0
		for i < len(lines) {
			if ts, ok := lineTime(lines[i]); ok && !ts.Before(o.since) {
				break
			}
			i++
		}
		lines = lines[i:]
	}
	if o.tail >= 0 && int64(len(lines)) > o.tail {
		lines = lines[int64(len(lines))-o.tail:]
	}
	for _, l := range lines {
		if !writeLine(w, l, o.timestamps) {
			break
		}
	}
	return int64(end)
}

// followLog streams lines appended to f until the container exits (then
// drains) or ctx ends.
func (a *Agent) followLog(ctx context.Context, f *os.File, offset int64, id string, w io.Writer, rc *http.ResponseController, o logOptions) {
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return
	}
	br := bufio.NewReader(f)
	var partial []byte
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		wrote := false
		for {
			chunk, err := br.ReadBytes('\n')
			partial = append(partial, chunk...)
			if err != nil {
				break
			}
			if !writeLine(w, partial, o.timestamps) {
				return
			}
			partial, wrote = partial[:0], true
		}
		if wrote {
			rc.Flush()
		}
		st, err := a.rt.State(id)
		if err != nil || st.Status == dataplane.Exited {
			// One more read catches what the runtime wrote at exit.
			if rest, _ := io.ReadAll(br); len(rest) > 0 {
				partial = append(partial, rest...)
				for _, l := range bytes.SplitAfter(partial, []byte{'\n'}) {
					if len(l) > 0 {
						writeLine(w, l, o.timestamps)
					}
				}
				rc.Flush()
			}
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// lineTime parses a CRI log line's timestamp.
func lineTime(l []byte) (time.Time, bool) {
	sp := bytes.IndexByte(l, ' ')
	if sp < 0 {
		return time.Time{}, false
	}
	t, err := time.Parse(time.RFC3339Nano, string(l[:sp]))
	return t, err == nil
}

// writeLine writes one CRI log line as the user sees it: the message
// (preceded by the timestamp if asked), with a newline unless the line is
// a partial ("P") one. It returns false once the writer refuses more.
func writeLine(w io.Writer, l []byte, timestamps bool) bool {
	// <time> <stream> <tag> <message>\n
	f := bytes.SplitN(l, []byte{' '}, 4)
	if len(f) < 4 {
		_, err := w.Write(l)
		return err == nil
	}
	msg := bytes.TrimSuffix(f[3], []byte{'\n'})
	var out []byte
	if timestamps {
		out = append(append(out, f[0]...), ' ')
	}
	out = append(out, msg...)
	if string(f[2]) != "P" {
		out = append(out, '\n')
	}
	_, err := w.Write(out)
	return err == nil
}

// limitWriter stops after left bytes (left < 0: no limit).
type limitWriter struct {
	w    io.Writer
	left int64
}

func (l *limitWriter) Write(p []byte) (int, error) {
	if l.left == 0 {
		return 0, io.EOF
	}
	if l.left > 0 && int64(len(p)) > l.left {
		p = p[:l.left]
	}
	n, err := l.w.Write(p)
	if l.left > 0 {
		l.left -= int64(n)
	}
	return n, err
}
