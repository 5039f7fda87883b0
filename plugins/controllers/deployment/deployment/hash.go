package deployment

import (
	"hash/fnv"
	"strconv"
)

// safeAlphabet is apimachinery's rand.SafeEncodeString alphabet (no vowels,
// no 0/1/3 that read like letters, so no bad words).
const safeAlphabet = "bcdfghjklmnpqrstvwxz2456789"

// TemplateHash is the pod-template-hash of a pod template: like
// Kubernetes' ComputeHash, the FNV-32a hash of the template (here its JSON
// as the API server encodes it) and, when not nil, the collision count,
// rendered by encoding the decimal digits of the hash with SafeEncodeString.
func TemplateHash(template []byte, collisionCount *int32) string {
	h := fnv.New32a()
	h.Write(template)
	if collisionCount != nil {
		var b [4]byte
		c := uint32(*collisionCount)
		b[0], b[1], b[2], b[3] = byte(c), byte(c>>8), byte(c>>16), byte(c>>24)
		h.Write(b[:])
	}
	digits := strconv.FormatUint(uint64(h.Sum32()), 10)
	out := make([]byte, len(digits))
	for i := range len(digits) {
		out[i] = safeAlphabet[int(digits[i])%len(safeAlphabet)]
	}
	return string(out)
}
