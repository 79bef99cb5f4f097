"""The one module that talks to the Kubernetes API (an import-linter contract enforces it)."""
