// Package agentcgroup pins dependencies until their users land.
package agentcgroup
import (
 _ "github.com/BurntSushi/toml"
 _ "github.com/cilium/ebpf"
 _ "github.com/cilium/ebpf/link"
 _ "github.com/ulikunitz/xz"
 _ "github.com/prometheus/client_golang/prometheus"
 _ "github.com/prometheus/client_golang/prometheus/promhttp"
 _ "github.com/HdrHistogram/hdrhistogram-go"
 _ "gonum.org/v1/gonum/stat"
 _ "gonum.org/v1/plot"
 _ "golang.org/x/sys/unix"
)
