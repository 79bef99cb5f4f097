"""Model runtimes behind one interface (`base.Runtime`): LightGBM and ONNX."""
