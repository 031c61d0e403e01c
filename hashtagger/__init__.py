"""hashtagger: hashtag recommendation for image + caption posts (LXMERT4Hashtag).

Kept light: `tag` must not import torch. The version is written here only; pyproject.toml reads it.
"""

__version__ = "0.1.0"
