"""The rollout: a pure state machine whose whole state lives in the ModelDeployment's status.

- `types`: what the machine reads (`RolloutInput`, `SlotObservation`) and returns (`Transition`).
- `commands`: the manual commands (`Command`) and the annotation that carries them.
- `steps`: where the canary stands in its steps, when to look at it, pods per slot.
- `approvals`: the webhook and approval gates and the smoke test: when to ask them, their answers.
- `draft`, `canary`, `machine`: the machine itself; `machine.next_action` is its entry point.
- `transitions`: its states and moves as a table (a test binds it to the machine), and the
  diagram docs/architecture.md draws from it.

Every name has one import path, its module's; this package re-exports nothing.
"""
