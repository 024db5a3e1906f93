package config

import (
	_ "embed" // the built-in policy
)

//go:embed builtin.toml
var builtinSrc []byte

// BuiltinName is the Path of the built-in policy, shown in status and the
// event log where a file name would be.
const BuiltinName = "built-in"

// Builtin returns the policy for a daemon started without a policy file:
// the default daemon settings and one profile per class, in monitor-only
// mode (see builtin.toml). Each call returns a fresh copy.
func Builtin() *Config {
	c, err := Parse(BuiltinName, builtinSrc)
	if err != nil {
		// The file is compiled in and covered by a test.
		panic("built-in policy: " + err.Error())
	}
	return c
}
