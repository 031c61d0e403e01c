"""The exported bundle, no torch: its on-disk format (format), decision thresholds (thresholds), ONNX Runtime
sessions on the best provider that works (runtime) and what the GPU path needs beyond the CPU's (gpu)."""
