//go:build tools

// Package tools pins the Prometheus command that hack/modelfleet_dev/realnode/images_go.py builds.
package tools

import (
	_ "github.com/prometheus/prometheus/cmd/prometheus"
)
