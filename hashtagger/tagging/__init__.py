"""Tagging with an exported bundle, no torch: the Tagger session, the library's entry point (tagger), its options
(options), which hashtags a post gets from its scores: own hashtags left out, --exclude, --always (picking), the
pipeline's decode / extract / score steps (pipeline) on bounded stages (stages), records and why a post was
skipped (records), `tag`'s run into a file with --resume (run), the output formats and their writers (writers) and
readers (readers), what produced an output, recorded in it (provenance), why a post got a hashtag (attribution,
explain), hashtags written beside each image (sidecars), and the Ray engine (ray/)."""
