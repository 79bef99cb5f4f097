//go:build tools

// Package tools pins the helm command built from this module (hack/modelfleet_dev/localcluster/helm.py).
package tools

import (
	_ "helm.sh/helm/v4/cmd/helm"
)
