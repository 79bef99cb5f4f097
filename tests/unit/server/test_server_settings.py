"""Settings: env vars with the MODELFLEET_ prefix, validated at start-up with messages
that name the setting; the serve command's flags map onto the same fields."""

from __future__ import annotations

import pytest
import typer
from pydantic import ValidationError

from modelfleet.server.cli import parse_flags
from modelfleet.server.settings import ServerSettings


def test_env_vars_configure_everything(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELFLEET_MODEL_URI", "s3://bucket/fraud/model.onnx")
    monkeypatch.setenv("MODELFLEET_PORT", "9000")
    monkeypatch.setenv("MODELFLEET_FAULT_ERROR_RATE", "0.05")
    monkeypatch.setenv("MODELFLEET_SLOT", "green")
    settings = ServerSettings()
    assert settings.resolved_format == "onnx"
    assert (settings.port, settings.fault_error_rate, settings.slot) == (9000, 0.05, "green")
    assert settings.model_name == "model"
    assert settings.metrics_port == 8082


@pytest.mark.parametrize(
    ("uri", "expected"),
    [("m.txt", "lightgbm"), ("gs://b/m.onnx", "onnx"), ("https://h/m.txt.gz", "lightgbm")],
)
def test_format_from_extension(uri: str, expected: str) -> None:
    assert ServerSettings(model_uri=uri).resolved_format == expected


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"model_uri": "model.bin"}, "MODELFLEET_MODEL_FORMAT"),
        ({"model_uri": "m.txt", "workers": 2}, "MODELFLEET_WORKERS must be 1"),
        ({"model_uri": "m.txt", "model_sha256": "abc"}, "MODELFLEET_MODEL_SHA256"),
        ({"model_uri": "m.txt", "fault_error_rate": 1.5}, "fault_error_rate"),
    ],
)
def test_bad_settings_name_what_to_fix(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ServerSettings(**overrides)  # type: ignore[arg-type]


def test_sha256_pin_is_normalised() -> None:
    pin = "sha256:" + "AB" * 32
    assert ServerSettings(model_uri="m.txt", model_sha256=pin).model_sha256 == "ab" * 32


def test_flags_map_to_fields() -> None:
    fields = set(ServerSettings.model_fields)
    parsed = parse_flags(
        ["--model", "m.txt", "--max-batch-size=8", "--access-log", "--name", "fraud"],
        fields,
        {"access_log"},
    )
    assert parsed == {
        "model_uri": "m.txt",
        "max_batch_size": "8",
        "access_log": "true",
        "model_name": "fraud",
    }


@pytest.mark.parametrize("args", [["--no-such-flag", "1"], ["stray"], ["--port"]])
def test_bad_flags_are_refused(args: list[str]) -> None:
    with pytest.raises(typer.BadParameter):
        parse_flags(args, set(ServerSettings.model_fields), set())
