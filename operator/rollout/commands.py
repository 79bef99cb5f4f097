"""The manual commands: `kubectl modelfleet <verb>` writes one into an annotation, the machine
acknowledges it by id in the status (so each command acts once)."""

from __future__ import annotations

from dataclasses import dataclass

COMMAND_ANNOTATION = "modelfleet.io/command"
VERBS = ("promote", "abort", "retry", "pause", "resume", "undo", "approve")


@dataclass(frozen=True)
class Command:
    """A manual-control request from the `modelfleet.io/command` annotation: "<verb>[ --full]:<id>"."""

    verb: str
    id: str
    full: bool = False

    @classmethod
    def parse(cls, text: str | None) -> Command | None:
        if not text or ":" not in text:
            return None
        head, _, command_id = text.rpartition(":")
        words = head.split()
        if not words or words[0] not in VERBS or not command_id:
            return None
        return cls(verb=words[0], id=command_id, full="--full" in words[1:])

    def render(self) -> str:
        return f"{self.verb}{' --full' if self.full else ''}:{self.id}"
