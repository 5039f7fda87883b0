// Package loopback lets components inside the server process (scheduler,
// controllers, the local node agent) talk to the API server through an
// ordinary client-go *rest.Config whose requests never leave the process:
// each request is served by the API handler directly, with a fixed user on
// its context, and the response streams back through a pipe, so watches
// work as they do over TCP.
//
// The components stay plain Kubernetes clients: given a rest.Config for a
// remote server instead, the same code runs out of process (as
// `tugboat agent` does).
package loopback

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"

	"k8s.io/client-go/rest"

	"github.com/tugboat-dev/tugboat/kernel/apiserver"
)

// Host is the placeholder URL of the in-process server; requests never
// resolve it.
const Host = "http://tugboat.loopback"

// Config returns a rest.Config whose requests h serves in-process as user.
// QPS limits are off: the server is the same process. Callers set
// ContentType/AcceptContentTypes (protobuf is cheaper) as they like.
func Config(h http.Handler, user apiserver.User) *rest.Config {
	return &rest.Config{
		Host:      Host,
		Transport: &Transport{Handler: h, User: user},
		QPS:       -1,
		Burst:     -1,
	}
}

// Transport is an http.RoundTripper that serves each request with Handler.
type Transport struct {
	Handler http.Handler
	User    apiserver.User
}

// RoundTrip runs the handler in a goroutine and returns once it has
// written its headers (or returned); the body streams as it writes.
// Cancelling the request's context ends a streaming handler (a watch) the
// same way a closed connection does.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	// The handler's context ends when the caller's does or when it closes
	// the body, as a closed connection would end it.
	ctx, cancel := context.WithCancel(apiserver.WithUser(req.Context(), t.User))
	r := req.Clone(ctx)
	if r.Body == nil {
		r.Body = http.NoBody
	}
	if r.RemoteAddr == "" {
		r.RemoteAddr = "loopback"
	}
	if r.RequestURI == "" {
		r.RequestURI = r.URL.RequestURI()
	}
	pr, pw := io.Pipe()
	w := &responseWriter{header: make(http.Header), pipe: pw, ready: make(chan struct{})}
	go func() {
		defer func() {
			if p := recover(); p != nil {
				w.fail(fmt.Errorf("loopback handler panic: %v", p))
				return
			}
			w.finish()
		}()
		t.Handler.ServeHTTP(w, r)
	}()
	select {
	case <-w.ready:
	case <-ctx.Done():
		cancel()
		pr.CloseWithError(ctx.Err())
		return nil, ctx.Err()
	}
	if w.err != nil {
		cancel()
		return nil, w.err
	}
	resp := &http.Response{
		Status:     fmt.Sprintf("%d %s", w.status, http.StatusText(w.status)),
		StatusCode: w.status,
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header:     w.sent,
		Request:    req,
	}
	if w.small != nil { // the handler finished before any flush: no pipe needed
		resp.Body = io.NopCloser(bytes.NewReader(w.small))
		resp.ContentLength = int64(len(w.small))
		pr.Close()
		cancel()
	} else {
		resp.Body = &body{pr: pr, cancel: cancel}
		resp.ContentLength = -1
	}
	return resp, nil
}

// responseWriter buffers a response until the handler flushes or returns:
// most responses are small and finish at once; watches flush and stream.
type responseWriter struct {
	header http.Header
	pipe   *io.PipeWriter

	mu      sync.Mutex
	status  int
	sent    http.Header // header snapshot at WriteHeader
	buf     bytes.Buffer
	small   []byte // complete body when the handler returned before flushing
	ready   chan struct{}
	readyed bool
	piping  bool
	err     error
}

func (w *responseWriter) Header() http.Header { return w.header }

func (w *responseWriter) WriteHeader(code int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.writeHeaderLocked(code)
}

func (w *responseWriter) writeHeaderLocked(code int) {
	if w.status != 0 {
		return
	}
	w.status = code
	w.sent = w.header.Clone()
}

func (w *responseWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	w.writeHeaderLocked(http.StatusOK)
	if !w.piping {
		n, err := w.buf.Write(p)
		w.mu.Unlock()
		return n, err
	}
	w.mu.Unlock()
	return w.pipe.Write(p)
}

// Flush switches to streaming: headers go to the caller, buffered and later
// bytes through the pipe (blocking until the client reads them, as a TCP
// connection with a full window would).
func (w *responseWriter) Flush() {
	w.mu.Lock()
	w.writeHeaderLocked(http.StatusOK)
	if !w.piping {
		w.piping = true
		w.signalLocked()
	}
	pending := bytes.Clone(w.buf.Bytes())
	w.buf.Reset()
	w.mu.Unlock()
	if len(pending) > 0 {
		_, _ = w.pipe.Write(pending)
	}
}

func (w *responseWriter) signalLocked() {
	if !w.readyed {
		w.readyed = true
		close(w.ready)
	}
}

// finish ends the response after the handler returned.
func (w *responseWriter) finish() {
	w.mu.Lock()
	w.writeHeaderLocked(http.StatusOK)
	if !w.piping {
		w.small = bytes.Clone(w.buf.Bytes())
		if w.small == nil {
			w.small = []byte{}
		}
		w.signalLocked()
		w.mu.Unlock()
		w.pipe.Close()
		return
	}
	w.mu.Unlock()
	w.pipe.Close()
}

func (w *responseWriter) fail(err error) {
	w.mu.Lock()
	if !w.readyed {
		w.err = err
		w.signalLocked()
	}
	w.mu.Unlock()
	w.pipe.CloseWithError(err)
}

// body is a streaming response body; Close unblocks the handler's writes.
type body struct {
	pr     *io.PipeReader
	cancel context.CancelFunc
}

func (b *body) Read(p []byte) (int, error) {
	n, err := b.pr.Read(p)
	if errors.Is(err, io.ErrClosedPipe) {
		err = io.EOF
	}
	return n, err
}

func (b *body) Close() error {
	b.cancel()
	return b.pr.CloseWithError(io.ErrClosedPipe)
}
