"""`hashtagger explain`: one post's top hashtags drawn with what each one rests on (attribution.py's erasure and
Shapley weights): the image with a heat map over its regions, the caption with its words shaded. No torch."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hashtagger.bundle.format import Bundle, read_bundle
from hashtagger.bundle.locate import find_model
from hashtagger.bundle.runtime import Runner
from hashtagger.data.images import DecodeBudget, ImageSettings, crop_window, load_image, preprocess
from hashtagger.data.posts import read_caption_file
from hashtagger.data.precomputed import precomputed_path, read_precomputed
from hashtagger.data.text import clean_caption
from hashtagger.errors import BundleError, DataError, ImageError
from hashtagger.io.claims import Reads, claim_output
from hashtagger.io.files import write_claimed
from hashtagger.tagging.attribution import Explanation, explain

# The picture's panels are about 460 pixels wide: the image is decoded at a reduced scale of at least twice
# that (load_image's size), never at full size (a 9400 x 9400 PNG would cost gigabytes through matplotlib).
PICTURE_SIDE = 512


@dataclass
class ExplainOptions:
    model: str | Path | None = None  # None: locate.find_model
    top_k: int = 3
    device: str = "auto"
    features_dir: str | Path | None = None  # for a bundle trained on precomputed region features
    overwrite: bool = False  # replace an existing picture


def explain_into(
    output: Path, image: Path, caption: str | None, caption_file: Path | None, options: ExplainOptions
) -> list[Explanation]:
    """Explain the post and draw it into `output` (a PNG), claimed before any work: never the post's image, its
    caption file or the bundle, an existing file only with `options.overwrite`."""
    features = Path(options.features_dir) if options.features_dir is not None else None
    model = Reads(find_model(options.model).path)
    inputs = [Path(image), caption_file, model, Reads(features) if features else None]
    with claim_output(
        output,
        overwrite=options.overwrite,
        resumable=False,
        inputs=inputs,
        suffixes=(".png",),
        what="explain draws a PNG",
    ) as claim:
        bundle, explanations = explain_post(image, read_caption(caption, caption_file), options)
        write_claimed(claim, picture(image, explanations, bundle.image))
    return explanations


def explain_post(image: Path, caption: str | None, options: ExplainOptions) -> tuple[Bundle, list[Explanation]]:
    """The bundle and the explanations of the post's `top_k` hashtags, best first. An unreadable image raises
    an ImageError that says why, as `tag` reports it."""
    bundle = read_bundle(find_model(options.model).path)
    has_extractor = "extractor" in bundle.info.graphs
    if not has_extractor and options.features_dir is None:
        raise BundleError(f"{bundle.path}: the model was trained on precomputed region features; pass --features-dir")
    image = Path(image)
    try:
        if has_extractor:
            size = bundle.image.size  # decoded at a reduced scale, as `tag` decodes (DecodeBudget: one image)
            pixels = preprocess(load_image(image, bundle.image.max_pixels, size, DecodeBudget()), bundle.image)
        elif options.features_dir is not None:  # checked above: a precomputed-feature bundle needs it
            feats, boxes = read_precomputed(precomputed_path(Path(options.features_dir), image))
    except ImageError as e:
        raise ImageError(f"{image}: {e}") from None
    runner = Runner.load(bundle, options.device)
    if has_extractor:
        feats, boxes = (x[0] for x in runner.features(pixels[None]))
    text = clean_caption(caption, bundle.cleaning) if caption else ""
    return bundle, explain(runner, bundle, text, feats, boxes, top_k=options.top_k)


def read_caption(caption: str | None, caption_file: Path | None) -> str | None:
    """--caption TEXT or a caption file (not both); None when neither is given."""
    if caption is not None and caption_file is not None:
        raise DataError("give the caption as --caption TEXT or as a file, not both")
    if caption_file is None:
        return caption
    try:
        return read_caption_file(caption_file)[0]  # its first MAX_CAPTION_BYTES, not a whole 2 GB file
    except OSError as e:
        raise DataError(f"{caption_file}: caption file unreadable ({e.strerror or e})") from None


def picture(image: Path, explanations: list[Explanation], settings: ImageSettings) -> bytes:
    """The PNG of figure() for the post's image (decoded reduced, as `tag` decodes it)."""
    buffer = io.BytesIO()
    shown = np.asarray(load_image(image, settings.max_pixels, PICTURE_SIDE, DecodeBudget()))
    figure(shown, explanations, settings).savefig(buffer, format="png", dpi=110)
    return buffer.getvalue()


def figure(picture: np.ndarray, explanations: list[Explanation], settings: ImageSettings) -> Any:
    """One panel per hashtag: the whole image, a dashed frame round the part the model sees (a centre crop leaves
    the borders out) with a heat map of its regions' weights inside it, the caption's words shaded by theirs, the
    score and the image / caption shares in the title, and a legend in plain words. A matplotlib Figure."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch, Rectangle

    n = max(1, len(explanations))
    fig = Figure(figsize=(max(4.2 * n, 7.5), 6.0), layout="constrained")
    FigureCanvasAgg(fig)
    panels = fig.subplots(2, n, squeeze=False, height_ratios=[3, 1])
    height, width = picture.shape[:2]
    left, top, right, bottom = crop_window(width, height, settings)
    for column, e in enumerate(explanations):
        ax = panels[0, column]
        ax.imshow(picture)
        ax.imshow(_heat(e), extent=(left, right, bottom, top), interpolation="nearest")
        ax.add_patch(Rectangle((left, top), right - left, bottom - top, fill=False, edgecolor="white", lw=1.6, ls="--"))
        ax.set_xlim(0, width)
        ax.set_ylim(height, 0)
        ax.set_axis_off()
        ax.set_title(
            f"#{e.tag}  {e.score:.2f}\nimage {e.image_share:.0%} · caption {1 - e.image_share:.0%}", fontsize=11
        )
        _shaded_words(panels[1, column], e)
    if not explanations:
        panels[0, 0].set_title("no hashtags")
    seen = "the whole picture, squashed to a square" if settings.crop_mode == "squash" else "its centre crop"
    fig.legend(
        handles=[
            Patch(color=FOR, label="orange: regions and words that raise the hashtag's score"),
            Patch(color=AGAINST, label="blue: those that lower it (darker: stronger)"),
            Line2D([], [], color="grey", linestyle="--", label=f"dashed frame: what the model sees ({seen})"),
        ],
        loc="outside lower center",
        ncol=1,
        fontsize=9,
        frameon=False,
    )
    fig.suptitle("Why these hashtags: image % / caption %, how much each part of the post counts", fontsize=10)
    return fig


FOR, AGAINST = (1.0, 0.45, 0.0), (0.1, 0.35, 1.0)  # orange: removing the part lowers the score; blue: raises it


def _shades(weights, share: float) -> np.ndarray:
    """-1..1 per part: its weight relative to the largest magnitude in its modality, times the modality's share,
    so that the parts of the modality that matters less stay pale however their small weights compare."""
    weights = np.asarray(weights, np.float64)
    top = np.abs(weights).max() if weights.size else 0.0
    return weights / top * share if top > 0 else np.zeros_like(weights)


def _rgba(shade: float) -> tuple[float, float, float, float]:
    return (*(FOR if shade >= 0 else AGAINST), 0.8 * abs(float(shade)))


def _heat(e: Explanation, cells: int = 120) -> np.ndarray:
    """An RGBA overlay: each region's shade painted over its box (the strongest where boxes overlap)."""
    overlay = np.zeros((cells, cells, 4), np.float32)
    for shade, (x1, y1, x2, y2) in zip(_shades(e.regions, e.image_share), np.clip(e.boxes, 0, 1), strict=True):
        rows = slice(int(y1 * cells), max(int(y1 * cells) + 1, round(y2 * cells)))
        cols = slice(int(x1 * cells), max(int(x1 * cells) + 1, round(x2 * cells)))
        stronger = overlay[rows, cols, 3] < 0.8 * abs(shade)
        overlay[rows, cols][stronger] = _rgba(shade)
    return overlay


def _shaded_words(ax, e: Explanation) -> None:
    """The caption's words left to right, wrapped, each on a background as dark as its weight; below them the
    terms the wide part weighs most, where the bundle has one."""
    ax.set_axis_off()
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    if not e.words:
        ax.text(0, 0.9, "(no caption words)", fontsize=9, va="top", style="italic")
        return
    shades = _shades([w for _, w in e.words], 1 - e.image_share)
    renderer = ax.figure.canvas.get_renderer()
    box = ax.get_window_extent(renderer)
    x, y, line = 0.0, 0.95, 0.16
    for (word, _), shade in zip(e.words, shades, strict=True):
        t = ax.text(
            x, y, word, fontsize=9, va="top", bbox={"boxstyle": "round,pad=0.15", "fc": _rgba(shade), "ec": "none"}
        )
        span = t.get_window_extent(renderer).width / max(1.0, box.width) + 0.02
        if x > 0 and x + span > 1.0:  # wrap: move the word to the next line
            x, y = 0.0, y - line
            t.set_position((x, y))
        x += span
    if e.wide_terms:  # the bundle's wide part: the caption terms it weighs most for this hashtag
        terms = ", ".join(term for term, _ in e.wide_terms)
        ax.text(0, y - 1.4 * line, f"wide part: {terms}", fontsize=8, va="top", style="italic")
