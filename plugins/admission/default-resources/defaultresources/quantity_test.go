package defaultresources

import (
	"math"
	"strings"
	"testing"

	kresource "k8s.io/apimachinery/pkg/api/resource"
)

// TestParseQuantity checks the lean parser against apimachinery's on
// acceptance and value. It is deliberately stricter in one way:
// apimachinery reads a quantity whose number has no digits ("m", "Mi",
// ".", "-", "e3") as
// zero, the plugin rejects it as a likely typo (and exponents beyond ±308).
func TestParseQuantity(t *testing.T) {
	for _, s := range []string{
		"0", "1", "100m", "1.5", "0.5", ".5", "5.", "128Mi", "1Gi", "2G", "1e3", "1E3", "1e-3", "1.5e+2",
		"-1", "+1", "12n", "3u", "4k", "5M", "6T", "7P", "8E", "9Ki", "10Ti", "11Pi", "1Ei",
		"", "m", "Mi", "1.2.3", "1mm", "1MB", "1 Mi", " 1", "1e", "1e+", "e3", "1ki", "0x10", "1e1.5", ".", "-", "1Mi1",
	} {
		got, err := parseQuantity(s)
		q, kerr := kresource.ParseQuantity(s)
		if (err == nil) != (kerr == nil) && !(err != nil && !hasDigit(s)) {
			t.Errorf("parseQuantity(%q) error %v, apimachinery error %v", s, err, kerr)
			continue
		}
		if err != nil {
			continue
		}
		want := q.AsApproximateFloat64()
		if math.Abs(got-want) > 1e-9*math.Max(1, math.Abs(want)) {
			t.Errorf("parseQuantity(%q) = %g, apimachinery %g", s, got, want)
		}
	}
}

// FuzzParseQuantity: whatever the plugin accepts apimachinery accepts with
// the same value (below apimachinery's clamp at int64 range); whatever
// apimachinery accepts with digits and no decimal exponent, the plugin
// accepts (it rejects exponents beyond ±308, apimachinery does not).
func FuzzParseQuantity(f *testing.F) {
	for _, s := range []string{"100m", "1.5Gi", "1e3", "-.5", "12E", "1e-2"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := parseQuantity(s)
		q, kerr := kresource.ParseQuantity(s)
		switch {
		case err == nil && kerr != nil:
			t.Fatalf("parseQuantity(%q) = %g, apimachinery rejects it: %v", s, got, kerr)
		case err != nil && kerr == nil && hasDigit(s) && !strings.ContainsAny(s, "eE"):
			t.Fatalf("parseQuantity(%q): %v, apimachinery accepts it", s, err)
		case err == nil:
			want := q.AsApproximateFloat64()
			if math.Abs(want) < 1e18 && math.Abs(got-want) > 1e-6*math.Max(1, math.Abs(want)) {
				t.Fatalf("parseQuantity(%q) = %g, apimachinery %g", s, got, want)
			}
		}
	})
}

// hasDigit reports whether the number before the suffix has a digit.
func hasDigit(s string) bool {
	if len(s) > 0 && (s[0] == '+' || s[0] == '-') {
		s = s[1:]
	}
	if len(s) > 0 && s[0] == '.' {
		s = s[1:]
	}
	return len(s) > 0 && isDigit(s[0])
}
