"""The manual commands: `kubectl modelfleet <verb>` writes one into an annotation, the machine
acknowledges it by id in the status (so each command acts once)."""

from __future__ import annotations

from dataclasses import dataclass

COMMAND_ANNOTATION = "modelfleet.io/command"
VERBS = ("promote", "abort", "retry", "pause", "resume", "undo", "approve")


@dataclass(frozen=True)
class Command:
    """A manual-control request from the `modelfleet.io/command` annotation:
    "<verb>[ --full][ --by=<user>]:<id>" (`by`: who sent it, as the plugin's credentials said)."""

    verb: str
    id: str
    full: bool = False
    by: str | None = None

    @classmethod
    def parse(cls, text: str | None) -> Command | None:
        if not text or ":" not in text:
            return None
        head, _, command_id = text.rpartition(":")
        words = head.split()
        if not words or words[0] not in VERBS or not command_id:
            return None
        by = next((word.removeprefix("--by=") for word in words if word.startswith("--by=")), None)
        return cls(verb=words[0], id=command_id, full="--full" in words[1:], by=by or None)

    def render(self) -> str:
        by = f" --by={'_'.join(self.by.split())}" if self.by else ""
        return f"{self.verb}{' --full' if self.full else ''}{by}:{self.id}"
