"""`make demo`: the modelfleet story on the local control plane (`python -m demo [--keep]`).

- `cluster`: starts (or reuses) the local control plane the way `make cluster-up` does, so
  `make cluster-down` stops what `--keep` leaves running; the operator runs beside it.
- `watch`: follows one ModelDeployment's status and keeps what each step measured (pure records).
- `view`: the live terminal view (rich on a TTY, plain progress lines otherwise) and the summary.
- `story`: the three chapters (v1 Ready, v2 promoted, v3 rolled back) and the exit code.
"""
