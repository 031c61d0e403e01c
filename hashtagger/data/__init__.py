"""Posts in, no torch: loading a folder / CSV / Parquet of posts and the paper's preparation (posts), caption
cleaning and tokenising (text), hashtags as names (tagnames), image decoding (images), region features and
their cache (regions, precomputed), Parquet I/O (parquet), and prepared posts -> model batches (batching)."""
