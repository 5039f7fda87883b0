package store

import (
	"errors"
	"strings"
	"testing"

	"github.com/tugboat-dev/tugboat/kernel/errdefs"
)

func TestKey(t *testing.T) {
	tests := []struct {
		name                      string
		resource, namespace, item string
		want                      string
	}{
		{"namespaced", "pods", "default", "web-0", "/registry/pods/default/web-0"},
		{"cluster scoped", "nodes", "", "node-1", "/registry/nodes/node-1"},
		{"group qualified namespaced", "apps/deployments", "kube-system", "dns", "/registry/apps/deployments/kube-system/dns"},
		{"group qualified cluster scoped", "rbac.authorization.k8s.io/clusterroles", "", "admin", "/registry/rbac.authorization.k8s.io/clusterroles/admin"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Key(tt.resource, tt.namespace, tt.item)
			if got != tt.want {
				t.Fatalf("Key(%q, %q, %q) = %q, want %q", tt.resource, tt.namespace, tt.item, got, tt.want)
			}
			if err := ValidateKey(got); err != nil {
				t.Fatalf("ValidateKey(%q) = %v, want nil", got, err)
			}
		})
	}
}

func TestPrefix(t *testing.T) {
	tests := []struct {
		name                string
		resource, namespace string
		want                string
	}{
		{"resource", "pods", "", "/registry/pods/"},
		{"namespace", "pods", "default", "/registry/pods/default/"},
		{"group qualified", "apps/deployments", "", "/registry/apps/deployments/"},
		{"group qualified namespace", "apps/deployments", "ns1", "/registry/apps/deployments/ns1/"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Prefix(tt.resource, tt.namespace)
			if got != tt.want {
				t.Fatalf("Prefix(%q, %q) = %q, want %q", tt.resource, tt.namespace, got, tt.want)
			}
			if err := ValidatePrefix(got); err != nil {
				t.Fatalf("ValidatePrefix(%q) = %v, want nil", got, err)
			}
			// Every key built from the same parts lies under the prefix.
			if k := Key(tt.resource, tt.namespace, "x"); !strings.HasPrefix(k, got) {
				t.Fatalf("Key(%q, %q, \"x\") = %q is not under %q", tt.resource, tt.namespace, k, got)
			}
		})
	}
}

func TestValidateKey(t *testing.T) {
	longName := strings.Repeat("n", MaxKeyLen-len("/registry/pods/"))
	tests := []struct {
		name    string
		key     string
		wantErr bool
	}{
		{"two segments", "/registry/nodes/n1", false},
		{"three segments", "/registry/pods/default/web-0", false},
		{"four segments", "/registry/apps/deployments/default/web", false},
		{"punctuation", "/registry/pods/ns_1/a.b-c:d~e", false},
		{"exactly max length", "/registry/pods/" + longName, false},
		{"one over max length", "/registry/pods/" + longName + "n", true},
		{"empty", "", true},
		{"root only", "/registry/", true},
		{"root without slash", "/registry", true},
		{"one segment", "/registry/pods", true},
		{"one segment trailing slash", "/registry/pods/", true},
		{"trailing slash", "/registry/pods/default/web/", true},
		{"relative", "pods/x", true},
		{"other root", "/other/pods/x", true},
		{"root prefix without separator", "/registrypods/x", true},
		{"empty segment", "/registry/pods//x", true},
		{"leading empty segment", "/registry//pods/x", true},
		{"dot segment", "/registry/pods/./x", true},
		{"dot dot segment", "/registry/pods/../x", true},
		{"dot dot name", "/registry/pods/..", true},
		{"five segments", "/registry/a/b/c/d/e", true},
		{"space", "/registry/pods/a b", true},
		{"tab", "/registry/pods/a\tb", true},
		{"NUL", "/registry/pods/a\x00b", true},
		{"DEL", "/registry/pods/a\x7fb", true},
		{"non-ASCII", "/registry/pods/caf\u00e9", true},
		{"invalid UTF-8", "/registry/pods/\xff", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateKey(tt.key)
			if !tt.wantErr {
				if err != nil {
					t.Fatalf("ValidateKey(%q) = %v, want nil", tt.key, err)
				}
				return
			}
			if !errors.Is(err, errdefs.ErrInvalid) {
				t.Fatalf("ValidateKey(%q) = %v, want ErrInvalid", tt.key, err)
			}
		})
	}
}

func TestValidatePrefix(t *testing.T) {
	tests := []struct {
		name    string
		prefix  string
		wantErr bool
	}{
		{"root", "/registry/", false},
		{"resource", "/registry/pods/", false},
		{"namespace", "/registry/pods/default/", false},
		{"without trailing slash", "/registry/pods/def", false},
		{"full key", "/registry/pods/default/web-0", false},
		{"group qualified", "/registry/apps/deployments/", false},
		{"empty", "", true},
		{"root without slash", "/registry", true},
		{"relative", "pods/", true},
		{"other root", "/other/", true},
		{"double slash", "/registry/pods//", true},
		{"root double slash", "/registry//", true},
		{"empty segment", "/registry/pods//x/", true},
		{"dot dot", "/registry/pods/../", true},
		{"dot", "/registry/./", true},
		{"space", "/registry/po ds/", true},
		{"NUL", "/registry/pods\x00/", true},
		{"non-ASCII", "/registry/p\u00f6ds/", true},
		{"too long", "/registry/" + strings.Repeat("p", MaxKeyLen) + "/", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidatePrefix(tt.prefix)
			if !tt.wantErr {
				if err != nil {
					t.Fatalf("ValidatePrefix(%q) = %v, want nil", tt.prefix, err)
				}
				return
			}
			if !errors.Is(err, errdefs.ErrInvalid) {
				t.Fatalf("ValidatePrefix(%q) = %v, want ErrInvalid", tt.prefix, err)
			}
		})
	}
}

// FuzzValidateKey checks ValidateKey against the rules in its doc comment:
// it never panics, rejects only with ErrInvalid, and accepts exactly the keys
// that are under Root, at most MaxKeyLen bytes of printable ASCII, with two to
// four segments none of which is empty, "." or "..". An accepted key is also a
// valid prefix, with or without a trailing "/".
func FuzzValidateKey(f *testing.F) {
	for _, seed := range []string{
		"", "/registry/", "/registry/pods/x", "/registry/pods/ns/x", "/registry/apps/deployments/ns/x",
		"/registry/a/b/c/d/e", "/registry/pods//x", "/registry/pods/../x", "/registry/pods/a b",
		"/registry/pods/a\x00", "/registry/pods/\u00e9", "pods/x", "/registry/pods/.",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, key string) {
		err := ValidateKey(key)
		want := wellFormedKey(key)
		if err != nil {
			if !errors.Is(err, errdefs.ErrInvalid) {
				t.Fatalf("ValidateKey(%q) = %v, want an ErrInvalid", key, err)
			}
			if want {
				t.Fatalf("ValidateKey(%q) = %v, but the key follows every rule", key, err)
			}
			return
		}
		if !want {
			t.Fatalf("ValidateKey(%q) accepted a key that breaks a rule", key)
		}
		if err := ValidatePrefix(key); err != nil {
			t.Fatalf("ValidatePrefix(%q) = %v for an accepted key", key, err)
		}
		if err := ValidatePrefix(key + "/"); err != nil {
			t.Fatalf("ValidatePrefix(%q) = %v for an accepted key plus \"/\"", key+"/", err)
		}
		segs := strings.Split(strings.TrimPrefix(key, Root), "/")
		switch len(segs) {
		case 2:
			if got := Key(segs[0], "", segs[1]); got != key {
				t.Fatalf("Key(%q, \"\", %q) = %q, want %q", segs[0], segs[1], got, key)
			}
		case 3:
			if got := Key(segs[0], segs[1], segs[2]); got != key {
				t.Fatalf("Key(%q, %q, %q) = %q, want %q", segs[0], segs[1], segs[2], got, key)
			}
		}
	})
}

// wellFormedKey is an independent statement of ValidateKey's rules.
func wellFormedKey(key string) bool {
	if len(key) > MaxKeyLen || !strings.HasPrefix(key, Root) {
		return false
	}
	for _, c := range []byte(key) {
		if c < '!' || c > '~' {
			return false
		}
	}
	segs := strings.Split(key[len(Root):], "/")
	if len(segs) < 2 || len(segs) > 4 {
		return false
	}
	for _, s := range segs {
		if s == "" || s == "." || s == ".." {
			return false
		}
	}
	return true
}
