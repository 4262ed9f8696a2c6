package ring

import (
	"encoding/binary"
	"math/bits"
	"unsafe"
)

// The default hash is XXH64 with seed 0 (https://xxhash.com, spec
// doc/xxhash_spec.md). It is fixed, not seeded per process, so a key lands on
// the same point of the ring after a restart and on every node, and other
// implementations can compute the same ring.

const (
	prime1 uint64 = 11400714785074694791
	prime2 uint64 = 14029467366897019727
	prime3 uint64 = 1609587929392839161
	prime4 uint64 = 9650029242287828579
	prime5 uint64 = 2870177450012600261
)

// xxh64 returns XXH64(b, seed 0).
func xxh64(b []byte) uint64 {
	n := len(b)
	var h uint64
	if n >= 32 {
		v1 := prime1
		v1 += prime2
		v2 := prime2
		v3 := uint64(0)
		v4 := uint64(0)
		v4 -= prime1
		for len(b) >= 32 {
			v1 = xxhRound(v1, binary.LittleEndian.Uint64(b[0:8]))
			v2 = xxhRound(v2, binary.LittleEndian.Uint64(b[8:16]))
			v3 = xxhRound(v3, binary.LittleEndian.Uint64(b[16:24]))
			v4 = xxhRound(v4, binary.LittleEndian.Uint64(b[24:32]))
			b = b[32:]
		}
		h = bits.RotateLeft64(v1, 1) + bits.RotateLeft64(v2, 7) +
			bits.RotateLeft64(v3, 12) + bits.RotateLeft64(v4, 18)
		h = xxhMerge(h, v1)
		h = xxhMerge(h, v2)
		h = xxhMerge(h, v3)
		h = xxhMerge(h, v4)
	} else {
		h = prime5
	}
	h += uint64(n)
	for ; len(b) >= 8; b = b[8:] {
		h ^= xxhRound(0, binary.LittleEndian.Uint64(b[:8]))
		h = bits.RotateLeft64(h, 27)*prime1 + prime4
	}
	if len(b) >= 4 {
		h ^= uint64(binary.LittleEndian.Uint32(b[:4])) * prime1
		h = bits.RotateLeft64(h, 23)*prime2 + prime3
		b = b[4:]
	}
	for _, c := range b {
		h ^= uint64(c) * prime5
		h = bits.RotateLeft64(h, 11) * prime1
	}
	h ^= h >> 33
	h *= prime2
	h ^= h >> 29
	h *= prime3
	h ^= h >> 32
	return h
}

func xxhRound(acc, input uint64) uint64 {
	acc += input * prime2
	acc = bits.RotateLeft64(acc, 31)
	return acc * prime1
}

func xxhMerge(acc, val uint64) uint64 {
	acc ^= xxhRound(0, val)
	return acc*prime1 + prime4
}

// stringBytes views s as a byte slice without copying, so hashing a key on
// the read path does not allocate. The slice must not be modified or kept;
// Options.Hash documents that contract for custom hashes.
func stringBytes(s string) []byte {
	return unsafe.Slice(unsafe.StringData(s), len(s))
}
