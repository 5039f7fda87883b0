package runtime

import (
	"bytes"
	"context"
	"log/slog"
	"sync"
	"time"
)

// Guest output limits: a plugin may log logBurst lines at once and
// logRate lines per second on average; the rest is dropped and counted.
const (
	logRate     = 100.0
	logBurst    = 200.0
	maxLineSize = 4 << 10
)

// guestOutput is the rate-limited log of one plugin: guest stdout/stderr,
// the log host function and refused host calls all go through it. Safe
// for concurrent use.
type guestOutput struct {
	logger *slog.Logger // carries the plugin's name

	mu      sync.Mutex
	tokens  float64
	last    time.Time
	dropped int
}

func newGuestOutput(log *slog.Logger) *guestOutput {
	return &guestOutput{logger: log, tokens: logBurst, last: time.Now()}
}

// allow takes a token. It reports whether the line may be logged, whether
// it is the first line dropped since the last one logged, and how many
// were dropped before it when it may.
func (o *guestOutput) allow() (ok, firstDrop bool, dropped int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	now := time.Now()
	o.tokens = min(logBurst, o.tokens+now.Sub(o.last).Seconds()*logRate)
	o.last = now
	if o.tokens < 1 {
		o.dropped++
		return false, o.dropped == 1, 0
	}
	o.tokens--
	dropped, o.dropped = o.dropped, 0
	return true, false, dropped
}

// log writes one line unless the plugin is over its rate. The first line
// dropped is replaced by a warning, and the next line logged is preceded
// by the count of lines dropped.
func (o *guestOutput) log(ctx context.Context, level slog.Level, msg string, attrs ...slog.Attr) {
	if !o.logger.Enabled(ctx, level) {
		return
	}
	ok, firstDrop, dropped := o.allow()
	switch {
	case firstDrop:
		o.logger.LogAttrs(ctx, slog.LevelWarn, "guest output over its rate limit; dropping lines")
	case dropped > 0:
		o.logger.LogAttrs(ctx, slog.LevelWarn, "guest output dropped (rate limit)", slog.Int(logKeyDropped, dropped))
	}
	if ok {
		o.logger.LogAttrs(ctx, level, msg, attrs...)
	}
}

// lineWriter turns one instance's stdout or stderr into log lines. Only
// the instance's current call writes to it.
type lineWriter struct {
	out    *guestOutput
	stream string
	level  slog.Level
	buf    []byte
}

func (w *lineWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			w.buf = append(w.buf, p...)
			if len(w.buf) >= maxLineSize {
				w.flush()
			}
			break
		}
		w.buf = append(w.buf, p[:i]...)
		w.flush()
		p = p[i+1:]
	}
	return n, nil
}

func (w *lineWriter) flush() {
	line := w.buf
	if len(line) > maxLineSize {
		line = line[:maxLineSize]
	}
	w.out.log(context.Background(), w.level, string(line), slog.String(logKeyStream, w.stream))
	w.buf = w.buf[:0]
}
