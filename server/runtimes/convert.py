"""`python -m modelfleet.server.runtimes.convert MODEL.txt OUT.onnx`: LightGBM to ONNX.

Run as its own process by the LightGBM runtime, so onnxmltools' imports and memory never
stay in the server. The output is written to a temp file and renamed into place.
"""

from __future__ import annotations

import sys
from pathlib import Path

ONNX_OPSET = 15


def convert_file(model_path: Path, out: Path) -> None:
    import lightgbm
    import onnxmltools
    from onnxmltools.convert.common.data_types import FloatTensorType

    booster = lightgbm.Booster(model_file=str(model_path))
    model = onnxmltools.convert_lightgbm(
        booster,
        initial_types=[("input", FloatTensorType([None, booster.num_feature()]))],
        zipmap=False,
        target_opset=ONNX_OPSET,
    )
    temp = out.with_name(out.name + ".partial")
    temp.write_bytes(model.SerializeToString())
    temp.replace(out)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(
            "usage: python -m modelfleet.server.runtimes.convert MODEL.txt OUT.onnx",
            file=sys.stderr,
        )
        return 2
    convert_file(Path(argv[0]), Path(argv[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
