package store

import (
	"fmt"
	"strings"

	"github.com/tugboat-dev/tugboat/kernel/errdefs"
)

// Root is the prefix every key lives under.
const Root = "/registry/"

// MaxKeyLen bounds a key's length in bytes.
const MaxKeyLen = 1024

// Key builds the key of an object: /registry/<resource>/<namespace>/<name>,
// or /registry/<resource>/<name> when namespace is empty (cluster-scoped).
func Key(resource, namespace, name string) string {
	if namespace == "" {
		return Root + resource + "/" + name
	}
	return Root + resource + "/" + namespace + "/" + name
}

// Prefix builds the prefix of a resource's keys, optionally within one
// namespace; it ends with "/".
func Prefix(resource, namespace string) string {
	if namespace == "" {
		return Root + resource + "/"
	}
	return Root + resource + "/" + namespace + "/"
}

// ValidateKey checks that key is an object key: under Root, two to four
// non-empty segments ("resource/name", "resource/ns/name", or a group-qualified
// resource), printable ASCII, no "." or ".." segments, at most MaxKeyLen bytes.
func ValidateKey(key string) error {
	segs, err := segments(key)
	if err != nil {
		return err
	}
	if len(segs) < 2 || len(segs) > 4 {
		return fmt.Errorf("key %q: want 2 to 4 segments under %s, got %d: %w", key, Root, len(segs), errdefs.ErrInvalid)
	}
	return nil
}

// ValidatePrefix checks a list/watch prefix: Root itself, or a key-shaped
// path under it, optionally ending in "/".
func ValidatePrefix(prefix string) error {
	if prefix == Root {
		return nil
	}
	_, err := segments(strings.TrimSuffix(prefix, "/"))
	return err
}

func segments(key string) ([]string, error) {
	if len(key) > MaxKeyLen {
		return nil, fmt.Errorf("key of %d bytes exceeds %d: %w", len(key), MaxKeyLen, errdefs.ErrInvalid)
	}
	if !strings.HasPrefix(key, Root) {
		return nil, fmt.Errorf("key %q: must start with %s: %w", key, Root, errdefs.ErrInvalid)
	}
	for i := 0; i < len(key); i++ {
		if c := key[i]; c <= ' ' || c >= 0x7f {
			return nil, fmt.Errorf("key %q: byte %#x at %d is not printable ASCII: %w", key, c, i, errdefs.ErrInvalid)
		}
	}
	segs := strings.Split(key[len(Root):], "/")
	for _, s := range segs {
		if s == "" || s == "." || s == ".." {
			return nil, fmt.Errorf("key %q: empty, \".\" or \"..\" segment: %w", key, errdefs.ErrInvalid)
		}
	}
	return segs, nil
}
