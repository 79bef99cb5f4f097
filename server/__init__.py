"""The modelfleet model server: LightGBM/ONNX runtimes, data plane, HTTP and metrics."""
