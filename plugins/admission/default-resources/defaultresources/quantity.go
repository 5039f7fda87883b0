package defaultresources

import (
	"errors"
	"strconv"
)

// parseQuantity checks s against the Kubernetes quantity grammar
// (k8s.io/apimachinery/pkg/api/resource) and returns its value as a float
// for ordering. The lean parser keeps the plugin small: importing
// apimachinery's resource package costs about a megabyte of Wasm (see
// docs/PLUGIN_GUIDE.md).
//
//	quantity ::= signedNumber suffix
//	suffix   ::= binarySI | decimalExponent | decimalSI
//	binarySI ::= Ki | Mi | Gi | Ti | Pi | Ei
//	decimalSI ::= n | u | m | "" | k | M | G | T | P | E
//	decimalExponent ::= ("e" | "E") signedNumber
//	number   ::= digits | digits "." digits | digits "." | "." digits
func parseQuantity(s string) (float64, error) {
	bad := errors.New("quantity " + strconv.Quote(s) + " does not match the quantity format (e.g. 100m, 1.5, 128Mi, 2G, 1e3)")
	i := 0
	if i < len(s) && (s[i] == '+' || s[i] == '-') {
		i++
	}
	intStart := i
	for i < len(s) && isDigit(s[i]) {
		i++
	}
	nInt := i - intStart
	nFrac := 0
	if i < len(s) && s[i] == '.' {
		i++
		fracStart := i
		for i < len(s) && isDigit(s[i]) {
			i++
		}
		nFrac = i - fracStart
	}
	if nInt+nFrac == 0 {
		return 0, bad
	}
	num, err := strconv.ParseFloat(s[:i], 64)
	if err != nil {
		return 0, bad
	}
	suffix := s[i:]
	mult := 1.0
	switch suffix {
	case "":
	case "n":
		mult = 1e-9
	case "u":
		mult = 1e-6
	case "m":
		mult = 1e-3
	case "k":
		mult = 1e3
	case "M":
		mult = 1e6
	case "G":
		mult = 1e9
	case "T":
		mult = 1e12
	case "P":
		mult = 1e15
	case "E":
		mult = 1e18
	case "Ki":
		mult = 1 << 10
	case "Mi":
		mult = 1 << 20
	case "Gi":
		mult = 1 << 30
	case "Ti":
		mult = 1 << 40
	case "Pi":
		mult = 1 << 50
	case "Ei":
		mult = 1 << 60
	default:
		if suffix[0] != 'e' && suffix[0] != 'E' {
			return 0, bad
		}
		exp := suffix[1:]
		j := 0
		if j < len(exp) && (exp[j] == '+' || exp[j] == '-') {
			j++
		}
		if j == len(exp) {
			return 0, bad
		}
		for ; j < len(exp); j++ {
			if !isDigit(exp[j]) {
				return 0, bad
			}
		}
		e, err := strconv.Atoi(exp)
		if err != nil || e > 308 || e < -308 {
			return 0, bad
		}
		f, err := strconv.ParseFloat("1e"+strconv.Itoa(e), 64)
		if err != nil {
			return 0, bad
		}
		mult = f
	}
	return num * mult, nil
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }
