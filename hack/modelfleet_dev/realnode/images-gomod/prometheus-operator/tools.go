//go:build tools

// Package tools pins the prometheus-operator commands that hack/modelfleet_dev/realnode/images_go.py builds.
package tools

import (
	_ "github.com/prometheus-operator/prometheus-operator/cmd/operator"
	_ "github.com/prometheus-operator/prometheus-operator/cmd/prometheus-config-reloader"
)
