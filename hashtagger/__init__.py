"""hashtagger: hashtag recommendation for image + caption posts (LXMERT4Hashtag).

    from hashtagger import Tagger
    tagger = Tagger.open("exported", device="auto")
    tagger.tag("photo.jpg", "Huge waves hitting the shore tonight").tags  # [Tag(tag="hurricane", score=0.61), ...]

Kept light: importing the package loads nothing and changes nothing process-wide; Tagger, Record, Tag and the error
classes load their modules (ONNX Runtime, never torch) when first named.
"""

from hashtagger.version import __version__

__all__ = ["HashtaggerError", "ImageError", "Record", "Tag", "Tagger", "__version__"]


def __getattr__(name: str):
    if name == "Tagger":
        from hashtagger.tagging import tagger

        return tagger.Tagger
    if name in ("Record", "Tag"):
        from hashtagger.tagging import records

        return getattr(records, name)
    if name in ("HashtaggerError", "ImageError"):
        from hashtagger import errors

        return getattr(errors, name)
    raise AttributeError(f"module 'hashtagger' has no attribute {name!r}")
