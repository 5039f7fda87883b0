package agent

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/tugboat-dev/tugboat/kernel/errdefs"
)

// Joining a machine: the server keeps a join token
// "tb1.<CA hash>.<secret>" (the first 16 bytes of the SHA-256 of its CA
// certificate, hex, and 32 random bytes, hex). The agent fetches the CA
// from JoinCAPath without trusting the connection, checks it against the
// hash in the token, then — now over verified TLS — posts the node name
// with the secret as bearer token to JoinPath and receives a client
// certificate for system:node:<name> (group system:nodes). Later starts
// reuse the stored credentials.
const (
	JoinCAPath  = "/tugboat/v1/join/ca"
	JoinPath    = "/tugboat/v1/join"
	tokenPrefix = "tb1"
)

// NewJoinToken returns a fresh token for a server whose CA certificate
// (PEM) is ca.
func NewJoinToken(caPEM []byte) (string, error) {
	h, err := caHash(caPEM)
	if err != nil {
		return "", err
	}
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		return "", err
	}
	return tokenPrefix + "." + h + "." + hex.EncodeToString(secret), nil
}

// LoadJoinToken reads the token at path, creating it if missing or made
// for another CA.
func LoadJoinToken(path string, caPEM []byte) (string, error) {
	h, err := caHash(caPEM)
	if err != nil {
		return "", err
	}
	if b, err := os.ReadFile(path); err == nil {
		tok := strings.TrimSpace(string(b))
		if th, _, err := parseToken(tok); err == nil && th == h {
			return tok, nil
		}
	}
	tok, err := NewJoinToken(caPEM)
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(path, []byte(tok+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("join token: %w", err)
	}
	return tok, nil
}

func parseToken(tok string) (hash, secret string, err error) {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 || parts[0] != tokenPrefix || len(parts[1]) != 32 || len(parts[2]) != 64 {
		return "", "", fmt.Errorf("join token: want %s.<32 hex>.<64 hex>: %w", tokenPrefix, errdefs.ErrInvalid)
	}
	return parts[1], parts[2], nil
}

func caHash(caPEM []byte) (string, error) {
	blk, _ := pem.Decode(caPEM)
	if blk == nil {
		return "", fmt.Errorf("join: CA is not PEM: %w", errdefs.ErrInvalid)
	}
	sum := sha256.Sum256(blk.Bytes)
	return hex.EncodeToString(sum[:16]), nil
}

// JoinRequest is what a joining agent posts.
type JoinRequest struct {
	Node string `json:"node"`
}

// JoinResponse carries the node's credentials.
type JoinResponse struct {
	CA   []byte `json:"ca"`
	Cert []byte `json:"cert"`
	Key  []byte `json:"key"`
}

// JoinServer serves JoinCAPath and JoinPath. Mount it before
// authentication: it authenticates joins by the token itself.
type JoinServer struct {
	Token string
	CA    []byte
	// Issue signs a client certificate for user in groups.
	Issue func(user string, groups []string) (cert, key []byte, err error)
}

func (j *JoinServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.URL.Path == JoinCAPath && r.Method == http.MethodGet:
		w.Header().Set("Content-Type", "application/x-pem-file")
		w.Write(j.CA)
	case r.URL.Path == JoinPath && r.Method == http.MethodPost:
		j.join(w, r)
	default:
		http.NotFound(w, r)
	}
}

func (j *JoinServer) join(w http.ResponseWriter, r *http.Request) {
	_, want, err := parseToken(j.Token)
	if err != nil {
		http.Error(w, "join is not configured", http.StatusServiceUnavailable)
		return
	}
	got, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if subtle.ConstantTimeCompare([]byte(got), []byte(want)) != 1 {
		http.Error(w, "invalid join token", http.StatusUnauthorized)
		return
	}
	var req JoinRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 4096)).Decode(&req); err != nil {
		http.Error(w, "bad join request: "+err.Error(), http.StatusBadRequest)
		return
	}
	if msgs := validation.IsDNS1123Subdomain(req.Node); len(msgs) > 0 {
		http.Error(w, fmt.Sprintf("node name %q: %s", req.Node, msgs[0]), http.StatusBadRequest)
		return
	}
	cert, key, err := j.Issue("system:node:"+req.Node, []string{"system:nodes"})
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(JoinResponse{CA: j.CA, Cert: cert, Key: key})
}

// Join obtains node credentials from the server at url (https) with a
// join token. It returns errdefs.ErrInvalid for a malformed token,
// errdefs.ErrConflict when the server's CA does not match the token.
func Join(ctx context.Context, url, token, node string) (*JoinResponse, error) {
	hash, secret, err := parseToken(token)
	if err != nil {
		return nil, err
	}
	url = strings.TrimSuffix(url, "/")
	insecure := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // the CA is checked against the token
	}}
	caPEM, err := get(ctx, insecure, url+JoinCAPath)
	if err != nil {
		return nil, fmt.Errorf("join: fetch CA: %w", err)
	}
	if h, err := caHash(caPEM); err != nil || h != hash {
		return nil, fmt.Errorf("join: the server's CA does not match the token: %w", errdefs.ErrConflict)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	verified := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	body, _ := json.Marshal(JoinRequest{Node: node})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url+JoinPath, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+secret)
	req.Header.Set("Content-Type", "application/json")
	resp, err := verified.Do(req)
	if err != nil {
		return nil, fmt.Errorf("join: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		return nil, fmt.Errorf("join: %s: %s", resp.Status, strings.TrimSpace(string(msg)))
	}
	var out JoinResponse
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return nil, fmt.Errorf("join: %w", err)
	}
	return &out, nil
}

func get(ctx context.Context, c *http.Client, url string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, errors.New(resp.Status)
	}
	return io.ReadAll(io.LimitReader(resp.Body, 1<<20))
}
