package cluster

import "math/bits"

// Bits is a set of node indexes. Operations grow the receiver as needed;
// the zero value is the empty set.
type Bits []uint64

// Set adds i.
func (b *Bits) Set(i int) {
	w := i >> 6
	if w >= len(*b) {
		b.grow(w + 1)
	}
	(*b)[w] |= 1 << (uint(i) & 63)
}

// Clear removes i.
func (b Bits) Clear(i int) {
	if w := i >> 6; w < len(b) {
		b[w] &^= 1 << (uint(i) & 63)
	}
}

// Has reports whether i is in the set.
func (b Bits) Has(i int) bool {
	w := i >> 6
	return w < len(b) && b[w]&(1<<(uint(i)&63)) != 0
}

func (b *Bits) grow(words int) {
	if words <= cap(*b) {
		old := len(*b)
		*b = (*b)[:words]
		clear((*b)[old:])
		return
	}
	nb := make(Bits, words, words+words/4+1)
	copy(nb, *b)
	*b = nb
}

// Reset empties the set, keeping its memory.
func (b *Bits) Reset() { *b = (*b)[:0] }

// CopyFrom makes b a copy of o.
func (b *Bits) CopyFrom(o Bits) {
	b.Reset()
	b.grow(len(o))
	copy(*b, o)
}

// Or adds every element of o.
func (b *Bits) Or(o Bits) {
	if len(o) > len(*b) {
		b.grow(len(o))
	}
	for i, w := range o {
		(*b)[i] |= w
	}
}

// And keeps only elements also in o.
func (b *Bits) And(o Bits) {
	if len(o) < len(*b) {
		*b = (*b)[:len(o)]
	}
	for i := range *b {
		(*b)[i] &= o[i]
	}
}

// AndNot removes every element of o.
func (b Bits) AndNot(o Bits) {
	n := min(len(b), len(o))
	for i := 0; i < n; i++ {
		b[i] &^= o[i]
	}
}

// Count returns the number of elements.
func (b Bits) Count() int {
	n := 0
	for _, w := range b {
		n += bits.OnesCount64(w)
	}
	return n
}

// Equal reports whether b and o hold the same elements.
func (b Bits) Equal(o Bits) bool {
	short, long := b, o
	if len(short) > len(long) {
		short, long = long, short
	}
	for i, w := range short {
		if long[i] != w {
			return false
		}
	}
	for _, w := range long[len(short):] {
		if w != 0 {
			return false
		}
	}
	return true
}

// Each calls fn for every element in increasing order.
func (b Bits) Each(fn func(i int)) {
	for wi, w := range b {
		for w != 0 {
			t := bits.TrailingZeros64(w)
			fn(wi<<6 + t)
			w &= w - 1
		}
	}
}
