"""Timestamps as the operator writes them into status, Events and CloudEvents.

RFC 3339 in UTC to the second with a trailing Z, the form Kubernetes writes itself.
"""

from __future__ import annotations

from datetime import UTC, datetime


def timestamp(now: datetime) -> str:
    return now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_timestamp(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))
