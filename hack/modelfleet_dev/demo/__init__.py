"""`make demo`: the modelfleet story, on a real node through Traefik by default (`python -m modelfleet_dev.demo
[--real|--kwok] [--keep]`).

- `real`: the real tier (a real kubelet node, our images, the operator as a Pod installed with
  `kubectl apply -k`, Traefik's Gateway, Prometheus) started and stopped with the story, and the
  client that counts every answer through Traefik; `real_story`: what the story adds there.
- `cluster` (`--kwok`): starts (or reuses) the local control plane the way `make cluster-up`
  does, so `make cluster-down` stops what `--keep` leaves running; the operator runs beside it.
- `spec`: the ModelDeployment of every chapter; the cluster says what differs per tier.
- `watch`: follows one ModelDeployment's status and keeps what each step measured (pure records).
- `view`: the live terminal view (rich on a TTY, plain progress lines otherwise) and the summary.
- `story`, `model_chapters`: the five chapters (v1 Ready, v2 promoted, v3 rolled back, v4's
  silent bug caught, v5 promoted and undone) and the exit code; `monitor_chapter`: the real
  tier's sixth (drift after promotion, named by the operator and sent to `webhook_receiver`).
"""
