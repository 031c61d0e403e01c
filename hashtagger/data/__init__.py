"""Posts in, no torch: loading a folder / CSV / Parquet of posts (posts), the paper's preparation, the
vocabulary and the split by image (prep), caption cleaning and tokenising (text), hashtags as names (tagnames),
image decoding (images), region features and their cache (regions, precomputed), Parquet I/O (parquet), and
prepared posts -> model batches (batching)."""
