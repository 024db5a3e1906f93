// Package load holds the unit operations workloads are built from: a fixed
// CPU loop, touched anonymous memory, and a seeded random source, so the
// same parameters always mean the same work.
package load

import (
	"math/rand/v2"
)

// CPU runs n iterations of a dependent integer mixing loop (about 1 ns per
// iteration on a 2020s x86 core, near native under TCG) and returns a value
// derived from every iteration so the compiler cannot drop the work.
func CPU(n int64) uint64 {
	x := uint64(0x9e3779b97f4a7c15)
	for i := int64(0); i < n; i++ {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
	}
	return x
}

// Sink keeps results of CPU observable.
var Sink uint64

// Rand returns a deterministic generator for (seed, stream): workloads
// derive one stream per purpose so adding draws to one does not shift
// another.
func Rand(seed uint64, stream string) *rand.Rand {
	return rand.New(rand.NewPCG(seed, hash(stream)))
}

// SubSeed derives a child seed, e.g. per workload name.
func SubSeed(seed uint64, name string) uint64 {
	return Rand(seed, name).Uint64()
}

// hash is FNV-1a, enough to separate stream names.
func hash(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return h
}
