"""hashtagger: hashtag recommendation for image + caption posts (LXMERT4Hashtag).

    from hashtagger import Tagger
    tagger = Tagger.open("exported", device="auto")
    tagger.tag("photo.jpg", "Huge waves hitting the shore tonight")  # [Tag(tag="hurricane", score=0.61), ...]

Kept light: importing the package loads nothing; Tagger and Tag load the tagging module (ONNX Runtime,
never torch) when first named; torchvision, where it is installed, is made importable before its first import
(torchvision_fix). The version is written here only; pyproject.toml reads it.
"""

from . import torchvision_fix

torchvision_fix.install()

__version__ = "0.1.0"
__all__ = ["Tag", "Tagger", "__version__"]


def __getattr__(name: str):
    if name in ("Tag", "Tagger"):
        from . import tagging

        return getattr(tagging, name)
    raise AttributeError(f"module 'hashtagger' has no attribute {name!r}")
