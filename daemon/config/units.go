package config

import "github.com/agentcgroup/agentcgroup/internal/units"

// ByteSize and Duration are the project's units (internal/units) under the
// names the policy code uses: a size is written as an integer or with a
// binary unit ("512MiB", "2G", "1.5G"), or "max" for no limit (Unlimited);
// a duration is a Go duration string ("250ms", "2s") and never negative.
type (
	ByteSize = units.Bytes
	Duration = units.Duration
)

// Unlimited is "max".
const Unlimited = units.Max
