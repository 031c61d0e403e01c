"""`tag --engine ray`: the input cut into shards (partition), the output folder of shards and its manifest
(shards), and the Ray Data pipeline (engine)."""
