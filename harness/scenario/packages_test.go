package scenario

import (
	"reflect"
	"strings"
	"testing"
)

func TestGuestPackages(t *testing.T) {
	text := strings.Replace(good, `swap = "zram:128M"`, `swap = "zram:128M"
packages = ["stress-ng", "rt-tests"]`, 1)
	s, err := Parse("t.toml", []byte(text), kernels)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"rt-tests", "stress-ng"}; !reflect.DeepEqual(s.Guest.Packages, want) {
		t.Errorf("packages %v, want %v (sorted)", s.Guest.Packages, want)
	}
	if s, _ := Parse("t.toml", []byte(good), kernels); s.Guest.Packages != nil {
		t.Errorf("no packages key: %v", s.Guest.Packages)
	}

	bad := strings.Replace(good, `swap = "zram:128M"`, `swap = "zram:128M"
packages = ["stress-ng=0.19", "Cyclictest", "rt-tests", "rt-tests"]`, 1)
	ps := problemsOf(t, bad)
	msg := ps.Error()
	for _, want := range []string{
		`bad.toml:10: guest.packages: "stress-ng=0.19": write the bare package name`,
		`guest.packages: "Cyclictest" is not a Debian package name`,
		`guest.packages: "rt-tests" listed twice`,
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("problems lack %q:\n%s", want, msg)
		}
	}
	if ps := problemsOf(t, strings.Replace(good, `cpus = 2`, `cpus = 2
packages = "stress-ng"`, 1)); !strings.Contains(ps.Error(), "guest.packages") {
		t.Errorf("a string instead of an array: %v", ps)
	}
}
