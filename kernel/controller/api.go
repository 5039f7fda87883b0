package controller

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"k8s.io/client-go/rest"

	"github.com/tugboat-dev/tugboat/kernel/errdefs"
)

// api is a raw JSON client of the API server: objects stay bytes, as the
// cache keeps them.
type api struct {
	http *http.Client
	base string
}

func newAPI(cfg *rest.Config) (*api, error) {
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return nil, fmt.Errorf("http client: %w", err)
	}
	base := strings.TrimSuffix(cfg.Host, "/")
	if !strings.Contains(base, "://") {
		base = "https://" + base
	}
	return &api{http: hc, base: base + strings.TrimSuffix(cfg.APIPath, "/api")}, nil
}

// do sends one request and returns the body of a 2xx response, or an
// error wrapping the errdefs sentinel of the response's status.
func (a *api) do(ctx context.Context, method, path string, query url.Values, contentType string, body []byte) ([]byte, error) {
	resp, err := a.send(ctx, method, path, query, contentType, body)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("%s %s: read body: %w: %w", method, path, errdefs.ErrUnavailable, err)
	}
	if resp.StatusCode/100 != 2 {
		return nil, statusError(method, path, resp.StatusCode, out)
	}
	return out, nil
}

// send returns the response of a request; the caller closes its body.
func (a *api) send(ctx context.Context, method, path string, query url.Values, contentType string, body []byte) (*http.Response, error) {
	u := a.base + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w: %w", method, path, errdefs.ErrInvalid, err)
	}
	req.Header.Set("Accept", "application/json")
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := a.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w: %w", method, path, errdefs.ErrUnavailable, err)
	}
	return resp, nil
}

// statusError maps an API error response to an errdefs sentinel, keeping
// the Status message.
func statusError(method, path string, code int, body []byte) error {
	var st struct {
		Message string `json:"message"`
		Reason  string `json:"reason"`
	}
	_ = json.Unmarshal(body, &st)
	msg := st.Message
	if msg == "" {
		msg = http.StatusText(code)
	}
	var sentinel error
	switch {
	case code == http.StatusNotFound:
		sentinel = errdefs.ErrNotFound
	case code == http.StatusConflict && st.Reason == "AlreadyExists":
		sentinel = errdefs.ErrAlreadyExists
	case code == http.StatusConflict:
		sentinel = errdefs.ErrConflict
	case code == http.StatusGone:
		sentinel = errdefs.ErrGone
	case code == http.StatusForbidden || code == http.StatusUnauthorized:
		sentinel = errdefs.ErrPermission
	case code == http.StatusRequestEntityTooLarge:
		sentinel = errdefs.ErrTooLarge
	case code == http.StatusBadRequest || code == http.StatusUnprocessableEntity || code == http.StatusUnsupportedMediaType:
		sentinel = errdefs.ErrInvalid
	case code == http.StatusTooManyRequests || code >= 500:
		sentinel = errdefs.ErrUnavailable
	default:
		sentinel = errors.New("unexpected status")
	}
	return fmt.Errorf("%s %s: %d %s: %w", method, path, code, msg, sentinel)
}
