package load

import (
	"encoding/binary"
	"fmt"

	"golang.org/x/sys/unix"
)

// PageSize is the stride at which touches fault in memory.
const PageSize = 4096

// Region is anonymous memory outside the Go heap, so its size is exactly
// what the workload asked for and unmapping returns it to the kernel at once.
type Region struct {
	b []byte
}

// Map reserves n bytes (rounded up to a page); nothing is resident until
// touched.
func Map(n int64) (*Region, error) {
	if n <= 0 {
		return &Region{}, nil
	}
	n = (n + PageSize - 1) / PageSize * PageSize
	b, err := unix.Mmap(-1, 0, int(n), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return nil, fmt.Errorf("mmap %d bytes: %w", n, err)
	}
	return &Region{b: b}, nil
}

// Len is the mapped size.
func (r *Region) Len() int64 { return int64(len(r.b)) }

// Touch writes a non-zero word into every 512 bytes of [off, off+n) (wrapping
// around the region), so each page is faulted in, dirtied, and not
// same-filled (zram would store an all-zero or same-filled page for free).
func (r *Region) Touch(off, n int64, val uint64) {
	if len(r.b) == 0 || n <= 0 {
		return
	}
	size := int64(len(r.b))
	off %= size
	val |= 1
	for done := int64(0); done < n; done += 512 {
		p := (off + done) % size
		p &^= 7
		v := val + uint64(p)
		r.b[p] = byte(v)
		r.b[p+1] = byte(v >> 8)
		r.b[p+2] = byte(v >> 16)
		r.b[p+3] = byte(v >> 24)
	}
}

// Unmap returns the memory; the Region is empty afterwards.
func (r *Region) Unmap() error {
	if len(r.b) == 0 {
		return nil
	}
	err := unix.Munmap(r.b)
	r.b = nil
	return err
}

// FillRandom writes pseudo-random bytes over every byte of [off, off+n)
// (wrapping around the region) from a generator seeded by seed, so no
// compressor can shrink the pages: zram keeps each one at full size after
// spending a compression attempt on it. It returns the generator's state,
// to continue the stream in a later call.
func (r *Region) FillRandom(off, n int64, seed uint64) uint64 {
	if len(r.b) == 0 || n <= 0 {
		return seed
	}
	size := int64(len(r.b))
	off = (off % size) &^ 7
	x := seed
	for done := int64(0); done < n; done += 8 {
		// splitmix64: cheap, and its output looks random to LZ-style
		// compressors (no repeats within a page).
		x += 0x9e3779b97f4a7c15
		z := x
		z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
		z = (z ^ (z >> 27)) * 0x94d049bb133111eb
		z ^= z >> 31
		p := (off + done) % size
		binary.LittleEndian.PutUint64(r.b[p:p+8], z)
	}
	return x
}

// TouchPages writes one random word per page of [off, off+n) (wrapping
// around), at a page offset that moves with val: each page is faulted in
// (swapped back in if it was reclaimed) and dirtied, and random-filled
// pages stay incompressible however often they are re-touched, at a
// fraction of FillRandom's CPU cost.
func (r *Region) TouchPages(off, n int64, val uint64) {
	if len(r.b) == 0 || n <= 0 {
		return
	}
	size := int64(len(r.b))
	in := int64(val%(PageSize/8)) * 8
	for done := int64(0); done < n; done += PageSize {
		p := ((off+done)%size)&^(PageSize-1) + in
		if p+8 > size {
			p = size - 8
		}
		z := val ^ uint64(p)*0x9e3779b97f4a7c15
		z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
		z = (z ^ (z >> 27)) * 0x94d049bb133111eb
		binary.LittleEndian.PutUint64(r.b[p:p+8], z^(z>>31))
	}
}
