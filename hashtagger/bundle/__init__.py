"""The exported bundle, no torch: its on-disk format (format), which bundle a command uses when none is named
(locate), what a model knows and whether it learnt only the prior (scope), decision thresholds (thresholds),
ONNX Runtime sessions on the best provider that works (runtime), what the GPU path needs beyond the CPU's
(gpu), the wide part blended with the model, scored with NumPy (wide), and a jointly trained wide part's tables,
for explanations (token_wide)."""
