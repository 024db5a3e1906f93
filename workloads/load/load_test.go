package load

import "testing"

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
