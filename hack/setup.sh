#!/usr/bin/env bash
# Installs what the test tiers and the demo need on a fresh machine; idempotent and cached.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "setup: nothing to install yet"
.venv/bin/python examples/train_models.py --out examples/models  # example models (idempotent; model server issue)
