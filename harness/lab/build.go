package lab

import "github.com/agentcgroup/agentcgroup/harness/kernelbuild"

func init() { builderFor = kernelbuild.Builder }
