"""The e2e harness: a traffic driver that honours the live router weights, and its helpers."""
