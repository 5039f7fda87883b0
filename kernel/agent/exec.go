package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/httpstream"
	"k8s.io/apimachinery/pkg/util/httpstream/spdy"
	"k8s.io/apimachinery/pkg/util/httpstream/wsstream"
	"k8s.io/apimachinery/pkg/util/remotecommand"

	"github.com/tugboat-dev/tugboat/kernel/dataplane"
)

// The remote command protocol (kubectl exec) as the kubelet serves it:
// WebSocket channel protocols v1-v5 (kubectl >= 1.31 speaks v5) and SPDY
// v2-v4 for older clients, on top of the maintained stream
// implementations in k8s.io/apimachinery (util/httpstream).

var podsResource = corev1.Resource("pods")

// streamIdle ends an exec whose connection carried nothing for this long.
const streamIdle = 4 * time.Hour

// execStreams are the negotiated streams of one exec.
type execStreams struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	resize         <-chan dataplane.TermSize
	writeStatus    func(code int, err error)
	close          func()
}

type streamOptions struct {
	stdin, stdout, stderr, tty bool
}

func parseStreamOptions(r *http.Request) streamOptions {
	q := r.URL.Query()
	b := func(k string) bool {
		v, err := strconv.ParseBool(q.Get(k))
		return err == nil && v
	}
	o := streamOptions{stdin: b("stdin"), stdout: b("stdout"), stderr: b("stderr"), tty: b("tty")}
	if o.tty {
		o.stderr = false // one terminal carries both
	}
	return o
}

// serveExec runs a command in a container, streaming its stdio.
func (a *Agent) serveExec(w http.ResponseWriter, r *http.Request) {
	cmd := r.URL.Query()["command"]
	if len(cmd) == 0 {
		writeStatusError(w, apierrors.NewBadRequest("you must specify at least 1 command"))
		return
	}
	id, err := a.containerID(r.PathValue("namespace"), r.PathValue("pod"), r.PathValue("container"), false)
	if err == nil {
		var st dataplane.State
		if st, err = a.rt.State(id); err == nil && st.Status != dataplane.Running {
			err = apierrors.NewBadRequest(fmt.Sprintf("container %s is not running", r.PathValue("container")))
		}
	}
	if err != nil {
		writeStatusError(w, err)
		return
	}
	o := parseStreamOptions(r)
	s, err := upgradeStreams(w, r, o)
	if err != nil {
		a.log.Debug("agent: exec streams", "err", err)
		return // the upgrade path already answered
	}
	defer s.close()
	code, err := a.rt.Exec(r.Context(), id, dataplane.ExecSpec{
		Command: cmd, Stdin: s.stdin, Stdout: s.stdout, Stderr: s.stderr, TTY: o.tty, Resize: s.resize,
	})
	s.writeStatus(code, err)
}

// statusWriter returns the v4+ status writer: a metav1.Status on the
// error stream, with the exit code as a cause.
func statusWriter(stream io.Writer) func(int, error) {
	return func(code int, err error) {
		st := metav1.Status{Status: metav1.StatusSuccess}
		switch {
		case err != nil:
			st = metav1.Status{Status: metav1.StatusFailure, Message: err.Error(), Reason: metav1.StatusReasonInternalError, Code: 500}
		case code != 0:
			st = metav1.Status{
				Status: metav1.StatusFailure, Reason: remotecommand.NonZeroExitCodeReason,
				Message: fmt.Sprintf("command terminated with non-zero exit code: exit status %d", code),
				Details: &metav1.StatusDetails{Causes: []metav1.StatusCause{{Type: remotecommand.ExitCodeCauseType, Message: strconv.Itoa(code)}}},
			}
		}
		b, _ := json.Marshal(st)
		stream.Write(b)
	}
}

// legacyStatusWriter is the v1-v3 status: the error text, nothing on
// success.
func legacyStatusWriter(stream io.Writer) func(int, error) {
	return func(code int, err error) {
		if err == nil && code != 0 {
			err = fmt.Errorf("command terminated with non-zero exit code: exit status %d", code)
		}
		if err != nil {
			stream.Write([]byte(err.Error()))
		}
	}
}

// resizes decodes TermSize JSON messages from r.
func resizes(r io.Reader) <-chan dataplane.TermSize {
	ch := make(chan dataplane.TermSize)
	go func() {
		defer close(ch)
		dec := json.NewDecoder(r)
		for {
			var s struct{ Width, Height uint16 }
			if err := dec.Decode(&s); err != nil {
				return
			}
			ch <- dataplane.TermSize{Width: s.Width, Height: s.Height}
		}
	}()
	return ch
}

func webSocketStreams(w http.ResponseWriter, r *http.Request, o streamOptions) (*execStreams, error) {
	const (
		stdinCh = iota
		stdoutCh
		stderrCh
		errorCh
		resizeCh
	)
	ch := func(on bool, t wsstream.ChannelType) wsstream.ChannelType {
		if on {
			return t
		}
		return wsstream.IgnoreChannel
	}
	channels := []wsstream.ChannelType{
		ch(o.stdin, wsstream.ReadChannel), ch(o.stdout, wsstream.WriteChannel), ch(o.stderr, wsstream.WriteChannel),
		wsstream.WriteChannel, wsstream.ReadChannel,
	}
	conn := wsstream.NewConn(map[string]wsstream.ChannelProtocolConfig{
		"":                                 {Binary: true, Channels: channels},
		"channel.k8s.io":                   {Binary: true, Channels: channels},
		"base64.channel.k8s.io":            {Binary: false, Channels: channels},
		remotecommand.StreamProtocolV4Name: {Binary: true, Channels: channels},
		"v4.base64.channel.k8s.io":         {Binary: false, Channels: channels},
		remotecommand.StreamProtocolV5Name: {Binary: true, Channels: channels},
	})
	conn.SetIdleTimeout(streamIdle)
	proto, streams, err := conn.Open(w, r)
	if err != nil {
		return nil, err
	}
	// An empty message on the lowest writable channel tells the client the
	// streams are up.
	switch {
	case o.stdout:
		streams[stdoutCh].Write(nil)
	case o.stderr:
		streams[stderrCh].Write(nil)
	default:
		streams[errorCh].Write(nil)
	}
	s := &execStreams{close: func() { conn.Close() }}
	if o.stdin {
		s.stdin = streams[stdinCh]
	}
	if o.stdout {
		s.stdout = streams[stdoutCh]
	}
	if o.stderr {
		s.stderr = streams[stderrCh]
	}
	if o.tty {
		s.resize = resizes(streams[resizeCh])
	}
	switch proto {
	case remotecommand.StreamProtocolV5Name, remotecommand.StreamProtocolV4Name, "v4.base64.channel.k8s.io":
		s.writeStatus = statusWriter(streams[errorCh])
	default:
		s.writeStatus = legacyStatusWriter(streams[errorCh])
	}
	return s, nil
}

// spdyProtocols are the SPDY remote command versions served, newest
// first.
var spdyProtocols = []string{remotecommand.StreamProtocolV4Name, remotecommand.StreamProtocolV3Name, remotecommand.StreamProtocolV2Name}

func spdyStreams(w http.ResponseWriter, r *http.Request, o streamOptions) (*execStreams, error) {
	proto, err := httpstream.Handshake(r, w, spdyProtocols)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return nil, err
	}
	type streamAndReply struct {
		httpstream.Stream
		replySent <-chan struct{}
	}
	streamCh := make(chan streamAndReply)
	done := make(chan struct{})
	conn := spdy.NewResponseUpgrader().UpgradeResponse(w, r, func(st httpstream.Stream, replySent <-chan struct{}) error {
		select {
		case streamCh <- streamAndReply{st, replySent}:
			return nil
		case <-done:
			return errors.New("exec streams already set up")
		}
	})
	if conn == nil {
		return nil, errors.New("spdy upgrade failed")
	}
	conn.SetIdleTimeout(streamIdle)
	want := 1 // error
	for _, on := range []bool{o.stdin, o.stdout, o.stderr} {
		if on {
			want++
		}
	}
	if o.tty && proto != remotecommand.StreamProtocolV2Name {
		want++ // resize
	}
	s := &execStreams{close: func() { close(done); conn.Close() }}
	var errStream io.Writer
	var replies []<-chan struct{}
	timeout := time.After(remotecommand.DefaultStreamCreationTimeout)
	for got := 0; got < want; got++ {
		select {
		case st := <-streamCh:
			replies = append(replies, st.replySent)
			switch st.Headers().Get(corev1.StreamType) {
			case corev1.StreamTypeError:
				errStream = st
			case corev1.StreamTypeStdin:
				s.stdin = st
			case corev1.StreamTypeStdout:
				s.stdout = st
			case corev1.StreamTypeStderr:
				s.stderr = st
			case corev1.StreamTypeResize:
				s.resize = resizes(st)
			default:
				got--
			}
		case <-timeout:
			s.close()
			return nil, errors.New("timed out waiting for the client to create streams")
		}
	}
	for _, r := range replies {
		<-r
	}
	if errStream == nil {
		s.close()
		return nil, errors.New("no error stream")
	}
	if proto == remotecommand.StreamProtocolV4Name {
		s.writeStatus = statusWriter(errStream)
	} else {
		s.writeStatus = legacyStatusWriter(errStream)
	}
	return s, nil
}

// upgradeStreams upgrades an exec or attach request to the remote-command
// streams kubectl asked for: WebSocket (kubectl >= 1.31) or SPDY. On an
// error the upgrade path has already answered the request.
func upgradeStreams(w http.ResponseWriter, r *http.Request, o streamOptions) (*execStreams, error) {
	if wsstream.IsWebSocketRequest(r) {
		return webSocketStreams(w, r, o)
	}
	return spdyStreams(w, r, o)
}
