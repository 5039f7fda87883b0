package main

import (
	"context"
	"log/slog"
	"sync/atomic"

	"k8s.io/klog/v2"
)

// clientGoLog is where client-go's klog output goes: the process logger
// of the running server or agent, once it is built. main installs the
// forwarding handler once, before any goroutine starts, because klog's
// logger may not be replaced while it is in use; runServer and the agent
// command only swap the target. Until then (and in tests, which never
// run main) the output is dropped.
var clientGoLog atomic.Pointer[slog.Logger]

// installClientGoLog routes klog (client-go's leader election, reflector
// warnings) through clientGoLog.
func installClientGoLog() {
	klog.SetSlogLogger(slog.New(forwardHandler{}))
}

// setClientGoLog sets the logger client-go's output goes to.
func setClientGoLog(l *slog.Logger) {
	clientGoLog.Store(l.With("component", "client-go"))
}

// forwardHandler hands records to the logger in clientGoLog.
type forwardHandler struct {
	attrs []slog.Attr
	group string
}

func (h forwardHandler) target() slog.Handler {
	l := clientGoLog.Load()
	if l == nil {
		return slog.DiscardHandler
	}
	t := l.Handler()
	if h.group != "" {
		t = t.WithGroup(h.group)
	}
	if len(h.attrs) > 0 {
		t = t.WithAttrs(h.attrs)
	}
	return t
}

func (h forwardHandler) Enabled(ctx context.Context, level slog.Level) bool {
	return h.target().Enabled(ctx, level)
}

func (h forwardHandler) Handle(ctx context.Context, r slog.Record) error {
	return h.target().Handle(ctx, r)
}

func (h forwardHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return forwardHandler{attrs: append(append([]slog.Attr(nil), h.attrs...), attrs...), group: h.group}
}

func (h forwardHandler) WithGroup(name string) slog.Handler {
	if h.group != "" {
		name = h.group + "." + name
	}
	return forwardHandler{attrs: h.attrs, group: name}
}
