package authn

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/tugboat-dev/tugboat/kernel/apiserver"
	"github.com/tugboat-dev/tugboat/kernel/errdefs"
)

// LoadTokenFile reads a Kubernetes static token file (kube-apiserver's
// --token-auth-file): CSV lines of token,user,uid and an optional
// "group1,group2" column; the uid is read but not kept. Every user also gets
// GroupAuthenticated. Empty and duplicate tokens, empty user names and lines
// with fewer than three columns are errors (wrapping errdefs.ErrInvalid)
// naming the file and line.
func LoadTokenFile(path string) (map[string]apiserver.User, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("token file: %w", err)
	}
	defer f.Close()
	r := csv.NewReader(f)
	r.FieldsPerRecord = -1
	r.TrimLeadingSpace = true
	tokens := make(map[string]apiserver.User)
	for {
		record, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("token file %s: %v: %w", path, err, errdefs.ErrInvalid)
		}
		line, _ := r.FieldPos(0)
		if len(record) < 3 {
			return nil, fmt.Errorf("token file %s line %d: %d columns, want at least 3 (token,user,uid[,\"group1,group2\"]): %w", path, line, len(record), errdefs.ErrInvalid)
		}
		token, name := strings.TrimSpace(record[0]), strings.TrimSpace(record[1])
		switch {
		case token == "":
			return nil, fmt.Errorf("token file %s line %d: empty token: %w", path, line, errdefs.ErrInvalid)
		case name == "":
			return nil, fmt.Errorf("token file %s line %d: empty user name: %w", path, line, errdefs.ErrInvalid)
		}
		if _, dup := tokens[token]; dup {
			return nil, fmt.Errorf("token file %s line %d: duplicate token: %w", path, line, errdefs.ErrInvalid)
		}
		// The uid column is required by the format but not kept:
		// apiserver.User has no UID yet.
		u := apiserver.User{Name: name}
		if len(record) > 3 {
			for g := range strings.SplitSeq(record[3], ",") {
				if g = strings.TrimSpace(g); g != "" {
					u.Groups = append(u.Groups, g)
				}
			}
		}
		u.Groups = append(u.Groups, GroupAuthenticated)
		tokens[token] = u
	}
	return tokens, nil
}
