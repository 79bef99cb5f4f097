//go:build tools

// Package tools pins the Traefik command that hack/modelfleet_dev/realnode/images_go.py builds.
package tools

import (
	_ "github.com/traefik/traefik/v3/cmd/traefik"
)
