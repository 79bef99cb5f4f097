"""KServe's Python ModelServer with a LightGBM model class (the shape of kserve's own
lgbserver/model.py): run inside its own venv by bench/server/run.py."""

from __future__ import annotations

import argparse
import uuid

import lightgbm
import numpy as np
from kserve import InferOutput, InferRequest, InferResponse, Model, ModelServer


# kserve lives only in the peer's own venv (not a project dependency): Model is Any to mypy
class LightGBMModel(Model):  # type: ignore[misc]
    def __init__(self, name: str, model_file: str) -> None:
        super().__init__(name)
        self.model_file = model_file
        self.booster: lightgbm.Booster | None = None

    def load(self) -> bool:
        self.booster = lightgbm.Booster(model_file=self.model_file)
        self.ready = True
        return self.ready

    def predict(
        self, payload: InferRequest, headers: dict[str, str] | None = None
    ) -> InferResponse:
        assert self.booster is not None
        rows = payload.inputs[0].as_numpy()
        probabilities = self.booster.predict(rows)
        assert isinstance(probabilities, np.ndarray)  # dense rows in, dense probabilities out
        output = InferOutput(name="probabilities", shape=list(probabilities.shape), datatype="FP64")
        output.set_data_from_numpy(probabilities, binary_data=False)
        response_id = payload.id or str(uuid.uuid4())  # kserve wants a string id
        return InferResponse(response_id, self.name, infer_outputs=[output])


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--model-file", required=True)
    parser.add_argument("--port", type=int, required=True)
    args, _ = parser.parse_known_args()
    model = LightGBMModel("model", args.model_file)
    model.load()
    ModelServer(
        http_port=args.port, workers=1, enable_grpc=False, enable_latency_logging=False
    ).start([model])
