"""Measuring models, no torch for an exported bundle: the paper's top-k metrics (metrics), ranking metrics for
unseen hashtags (ranking), bootstrap intervals (intervals), the TF-IDF baseline (tfidf), probabilities from
either backend (prediction), and `evaluate` itself (evaluate)."""
