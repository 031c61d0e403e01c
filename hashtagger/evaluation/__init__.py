"""Measuring models, no torch for an exported bundle: the paper's top-k metrics (metrics), ranking metrics for
unseen hashtags (ranking), bootstrap intervals (intervals), the TF-IDF baseline (tfidf), probabilities from
either backend (prediction), what `evaluate` is given (options), the compared systems and the evaluated posts
(systems), `evaluate` and `--compare` themselves (evaluate), `evaluate --unseen` (unseen), the report's
tables, JSON and plot (report), fitting a bundle's wide part (wide) and refitting it on accepted hashtags
(adapt)."""
