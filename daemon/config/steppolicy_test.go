package config

import (
	"strings"
	"testing"
)

// The scheduler's penalty threshold follows freeze_score unless the
// profile sets cpu.penalty_score, which then moves it alone.
func TestStepPolicyPenaltyScore(t *testing.T) {
	const base = "[profiles.background.escalation]\nthrottle_score = 10\nfreeze_score = 30\n"
	c, err := Parse("x.toml", []byte(base))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Profiles["background"].StepPolicy("background").PenaltyScore; got != 30 {
		t.Errorf("penalty_score unset: step policy penalty %d, want freeze_score 30", got)
	}
	c, err = Parse("x.toml", []byte(base+"[profiles.background.cpu]\npenalty_score = 100\n"))
	if err != nil {
		t.Fatal(err)
	}
	p := c.Profiles["background"]
	if got := p.StepPolicy("background").PenaltyScore; got != 100 || p.Escalation.FreezeScore != 30 {
		t.Errorf("penalty_score 100: step policy penalty %d, freeze %d; want 100 and 30", got, p.Escalation.FreezeScore)
	}
	_, err = Parse("x.toml", []byte(base+"[profiles.background.cpu]\npenalty_score = 1001\n"))
	if err == nil || !strings.Contains(err.Error(), "profiles.background.cpu.penalty_score") || !strings.Contains(err.Error(), "1..1000") {
		t.Errorf("penalty_score 1001: error %v, want one naming the field and the range", err)
	}
}
