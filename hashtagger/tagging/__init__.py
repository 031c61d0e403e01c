"""Tagging with an exported bundle, no torch: the Tagger session and `tag`'s run (tagger), the pipeline's
bounded stages (stages), record writers and readers per output format (writers), why a post got a hashtag
(attribution, explain), hashtags written beside each image (sidecars), and the Ray engine (ray/)."""
