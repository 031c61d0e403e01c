"""The exported bundle, no torch: its on-disk format (format), which bundle a command uses when none is named
(locate), what a model knows and whether it learnt only the prior (scope), decision thresholds (thresholds),
ONNX Runtime sessions on the best provider that works (runtime) and what the GPU path needs beyond the CPU's
(gpu)."""
