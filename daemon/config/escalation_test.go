package config

import "testing"

func TestOthersPSIRange(t *testing.T) {
	for _, v := range []string{"-1.0", "100.5", "nan"} {
		src := "[profiles.background.escalation]\nothers_psi_some_avg10 = " + v + "\n"
		if _, err := Parse("x.toml", []byte(src)); err == nil {
			t.Errorf("others_psi_some_avg10 = %s accepted", v)
		}
	}
	if _, err := Parse("x.toml", []byte("[profiles.background.escalation]\nothers_psi_some_avg10 = 10.0\n")); err != nil {
		t.Fatal(err)
	}
}
