"""hashtagger: hashtag recommendation for image + caption posts (LXMERT4Hashtag).

    from hashtagger import Tagger
    tagger = Tagger.open("exported", device="auto")
    tagger.tag("photo.jpg", "Huge waves hitting the shore tonight")  # [Tag(tag="hurricane", score=0.61), ...]

Kept light: importing the package loads nothing and changes nothing process-wide; Tagger, Tag and the error
classes load their modules (ONNX Runtime, never torch) when first named.
"""

from hashtagger.version import __version__

__all__ = ["HashtaggerError", "ImageError", "Tag", "Tagger", "__version__"]


def __getattr__(name: str):
    if name in ("Tag", "Tagger"):
        from hashtagger.tagging import tagger

        return getattr(tagger, name)
    if name in ("HashtaggerError", "ImageError"):
        from hashtagger import errors

        return getattr(errors, name)
    raise AttributeError(f"module 'hashtagger' has no attribute {name!r}")
