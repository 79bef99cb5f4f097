"""modelfleet: ship LightGBM/ONNX models to Kubernetes through metric-gated canaries.

`modelfleet.operator` is the Kopf operator (installed with the `operator` extra) and
`modelfleet.server` the model server (the `server` extra). This root package holds only
the command-line entry points shared by both images.
"""

__version__ = "0.1.0"
