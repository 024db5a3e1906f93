package load

import (
	"bytes"
	"compress/flate"
	"testing"
)

func TestRandStreams(t *testing.T) {
	if Rand(1, "a").Uint64() != Rand(1, "a").Uint64() {
		t.Error("same seed and stream differ")
	}
	if Rand(1, "a").Uint64() == Rand(1, "b").Uint64() || Rand(1, "a").Uint64() == Rand(2, "a").Uint64() {
		t.Error("streams or seeds do not separate")
	}
	if SubSeed(9, "x") != SubSeed(9, "x") || SubSeed(9, "x") == SubSeed(9, "y") {
		t.Error("SubSeed")
	}
}

func TestCPUDependsOnCount(t *testing.T) {
	if CPU(10) == CPU(11) {
		t.Error("CPU result does not depend on iterations (work could be elided)")
	}
}

func TestRegionTouchWritesNonZeroPages(t *testing.T) {
	r, err := Map(3*PageSize + 1)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Unmap()
	if r.Len() != 4*PageSize {
		t.Fatalf("len %d, want rounded to 4 pages", r.Len())
	}
	r.Touch(PageSize, 2*PageSize, 0)
	nonzero := func(page int) bool {
		for _, b := range r.b[page*PageSize : (page+1)*PageSize] {
			if b != 0 {
				return true
			}
		}
		return false
	}
	if nonzero(0) || !nonzero(1) || !nonzero(2) || nonzero(3) {
		t.Errorf("touch of pages 1-2 gave nonzero pages %v %v %v %v", nonzero(0), nonzero(1), nonzero(2), nonzero(3))
	}
	// wrapping past the end lands at the start
	r.Touch(3*PageSize, 2*PageSize, 7)
	if !nonzero(0) || !nonzero(3) {
		t.Error("wrap-around touch missed")
	}
}

// deflated is the size of b after DEFLATE at its best level: a stand-in
// for what zram's compressors can do with a page.
func deflated(t *testing.T, b []byte) int {
	var out bytes.Buffer
	w, err := flate.NewWriter(&out, flate.BestCompression)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(b)
	w.Close()
	return out.Len()
}

// The random fill is what makes reclaim to zram expensive: its pages do
// not compress, where the sparse touch's compress to almost nothing. Both
// are fixed by the seed.
func TestFillRandomIsIncompressibleAndSeeded(t *testing.T) {
	const n = 64 * PageSize
	a, _ := Map(n)
	b, _ := Map(n)
	s, _ := Map(n)
	defer a.Unmap()
	defer b.Unmap()
	defer s.Unmap()
	a.FillRandom(0, n, 42)
	b.FillRandom(0, n, 42)
	s.Touch(0, n, 42)
	if !bytes.Equal(a.b, b.b) {
		t.Error("same seed, different fill")
	}
	if got := deflated(t, a.b); got < n*99/100 {
		t.Errorf("random fill deflates to %d of %d bytes; want no gain", got, n)
	}
	if got := deflated(t, s.b); got > n/10 {
		t.Errorf("sparse touch deflates to %d of %d bytes; the contrast the fill option exists for is gone", got, n)
	}
	zero := 0
	for _, x := range a.b {
		if x == 0 {
			zero++
		}
	}
	if zero > n/128 {
		t.Errorf("%d zero bytes of %d in a random fill", zero, n)
	}
	// Re-touching dirties one word per page and keeps the page random.
	before := append([]byte(nil), a.b...)
	a.TouchPages(0, n, 7)
	changed := 0
	for p := 0; p < n; p += PageSize {
		if !bytes.Equal(before[p:p+PageSize], a.b[p:p+PageSize]) {
			changed++
		}
	}
	if changed != n/PageSize {
		t.Errorf("TouchPages changed %d of %d pages", changed, n/PageSize)
	}
	// However often: a thrashing neighbour re-touches thousands of times.
	for pass := uint64(0); pass < 2000; pass++ {
		a.TouchPages(0, n, pass)
	}
	if got := deflated(t, a.b); got < n*99/100 {
		t.Errorf("re-touched random pages deflate to %d of %d bytes", got, n)
	}
}
