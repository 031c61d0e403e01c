"""hashtagger: hashtag recommendation for image + caption posts (LXMERT4Hashtag). Kept light: `tag` must not import torch."""

__version__ = "0.1.0"
