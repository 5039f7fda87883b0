package badger

import (
	"encoding/binary"
	"fmt"
	"time"

	"github.com/tugboat-dev/tugboat/kernel/errdefs"
	"github.com/tugboat-dev/tugboat/kernel/store"
)

// Badger key layout. A commit group is one Badger transaction at one
// version (see version), so a crash leaves whole groups or nothing of one.
const (
	pfxKey    = 'k' // k<key>            -> record (versioned: one version per write)
	pfxEvent  = 'h' // h<rev:8>          -> event type + key (the event log)
	pfxLease  = 'l' // l<id:8>           -> ttl in milliseconds (uvarint)
	pfxAttach = 'a' // a<id:8><key>      -> empty: key is attached to lease id
)

// version is the Badger version of a commit group: the group's last
// revision in the high bits, and a counter of revision-less groups (lease
// grants, compaction marks, purges) committed since that revision in the low
// 16 bits, so that no key is ever written twice at one version.
func version(rev int64, sub uint16) uint64 { return uint64(rev)<<16 | uint64(sub) }

// readTs is the Badger read timestamp that sees every group up to and
// including revision rev.
func readTs(rev int64) uint64 { return uint64(rev)<<16 | 0xffff }

// revOf is the revision of a group version.
func revOf(v uint64) int64 { return int64(v >> 16) }

var (
	metaRev     = []byte("m/rev")     // last committed revision (8 bytes)
	metaCompact = []byte("m/compact") // compacted revision (8 bytes)
)

func dataKey(key string) []byte {
	b := make([]byte, 1+len(key))
	b[0] = pfxKey
	copy(b[1:], key)
	return b
}

func eventKey(rev int64) []byte {
	b := make([]byte, 9)
	b[0] = pfxEvent
	binary.BigEndian.PutUint64(b[1:], uint64(rev))
	return b
}

func leaseKey(id int64) []byte {
	b := make([]byte, 9)
	b[0] = pfxLease
	binary.BigEndian.PutUint64(b[1:], uint64(id))
	return b
}

func attachKey(id int64, key string) []byte {
	b := make([]byte, 9+len(key))
	b[0] = pfxAttach
	binary.BigEndian.PutUint64(b[1:], uint64(id))
	copy(b[9:], key)
	return b
}

func u64(v int64) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(v))
	return b[:]
}

func decodeU64(b []byte) (int64, error) {
	if len(b) != 8 {
		return 0, fmt.Errorf("decode revision: %d bytes, want 8: %w", len(b), errdefs.ErrInvalid)
	}
	v := binary.BigEndian.Uint64(b)
	if v > 1<<62 {
		return 0, fmt.Errorf("decode revision: %d out of range: %w", v, errdefs.ErrInvalid)
	}
	return int64(v), nil
}

// record is the value stored under k<key>: what the version does not say.
type record struct {
	createRev int64
	modRev    int64
	lease     int64
	value     []byte
}

const recordVersion = 1

// recordHeadroom is the most bytes a record header takes: the format
// version and three uvarints.
const recordHeadroom = 1 + 3*binary.MaxVarintLen64

// withHeadroom copies value behind recordHeadroom free bytes, so that the
// committer can put the header in front of it (encodeInPlace) instead of
// copying the value once more: the writer's goroutine makes the only copy.
func withHeadroom(value []byte) []byte {
	b := make([]byte, recordHeadroom+len(value))
	copy(b[recordHeadroom:], value)
	return b
}

// encodeInPlace returns the encoding of r, whose value is
// buf[recordHeadroom:] (see withHeadroom), written into buf: the result is
// a suffix of buf.
func (r record) encodeInPlace(buf []byte) []byte {
	var h [recordHeadroom]byte
	hb := append(h[:0], recordVersion)
	hb = binary.AppendUvarint(hb, uint64(r.createRev))
	hb = binary.AppendUvarint(hb, uint64(r.modRev))
	hb = binary.AppendUvarint(hb, uint64(r.lease))
	start := recordHeadroom - len(hb)
	copy(buf[start:], hb)
	return buf[start:]
}

// encode returns the encoding of r in a new buffer.
func (r record) encode() []byte { return r.encodeInPlace(withHeadroom(r.value)) }

// decodeRecord parses a stored record; the value aliases b.
func decodeRecord(b []byte) (record, error) {
	if len(b) == 0 || b[0] != recordVersion {
		return record{}, fmt.Errorf("decode record: unknown format: %w", errdefs.ErrInvalid)
	}
	b = b[1:]
	createRev, n := binary.Uvarint(b)
	if n <= 0 || createRev > 1<<62 {
		return record{}, fmt.Errorf("decode record: bad create revision: %w", errdefs.ErrInvalid)
	}
	b = b[n:]
	modRev, n := binary.Uvarint(b)
	if n <= 0 || modRev > 1<<62 || modRev < createRev {
		return record{}, fmt.Errorf("decode record: bad mod revision: %w", errdefs.ErrInvalid)
	}
	b = b[n:]
	lease, n := binary.Uvarint(b)
	if n <= 0 || lease > 1<<62 {
		return record{}, fmt.Errorf("decode record: bad lease: %w", errdefs.ErrInvalid)
	}
	return record{createRev: int64(createRev), modRev: int64(modRev), lease: int64(lease), value: b[n:]}, nil
}

// encodeEvent is the value stored under h<rev>.
func encodeEvent(t store.EventType, key string) []byte {
	b := make([]byte, 1+len(key))
	b[0] = byte(t)
	copy(b[1:], key)
	return b
}

func decodeEvent(b []byte) (store.EventType, string, error) {
	if len(b) < 2 {
		return 0, "", fmt.Errorf("decode event: %d bytes: %w", len(b), errdefs.ErrInvalid)
	}
	t := store.EventType(b[0])
	if t != store.Added && t != store.Modified && t != store.Deleted {
		return 0, "", fmt.Errorf("decode event: type %d: %w", b[0], errdefs.ErrInvalid)
	}
	return t, string(b[1:]), nil
}

func decodeTTL(b []byte) (int64, error) {
	ms, n := binary.Uvarint(b)
	if n <= 0 || n != len(b) || ms == 0 || ms > 1<<40 {
		return 0, fmt.Errorf("decode lease ttl: %w", errdefs.ErrInvalid)
	}
	return int64(ms), nil
}

func ttlBytes(ttl time.Duration) []byte {
	return binary.AppendUvarint(nil, uint64(ttl.Milliseconds()))
}

func (r record) kv(key string) store.KV {
	return store.KV{Key: key, Value: r.value, CreateRevision: r.createRev, ModRevision: r.modRev, Lease: r.lease}
}
