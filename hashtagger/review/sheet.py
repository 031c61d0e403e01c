"""`hashtagger review`'s sheet: a tag run's output as one self-contained HTML file. No torch.

    build_sheet("tags.jsonl", "sheet.html", posts="posts/")   # or a Ray output folder, whose manifest names posts

The file opens from disk with no server and loads nothing (inline CSS and JS, thumbnails as data: URIs, a
Content-Security-Policy that allows nothing else). The posts are one JSON blob in a <script type="application/json">
with every '<', '>' and '&' escaped, so no caption can end the script; the page builds its DOM with textContent only.
Bytes per post are bounded: a thumbnail of at most thumbs.MAX_BYTES (JPEG, as base64: 4/3 of that), a caption of at
most entries.MAX_CAPTION_CHARS characters, the id, image path, status and top-k hashtags. Posts whose image is
shared share one thumbnail. The page shows `page_size` posts at a time, so 10,000 posts stay usable.

The person accepts, rejects and adds hashtags and saves a CSV (post_id, image, caption, hashtags) that
`hashtagger train` reads as it is: images by absolute path, so the CSV may be saved anywhere.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import os
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path

from rich.console import Console

from hashtagger.data.posts import CsvColumns
from hashtagger.errors import ImageError
from hashtagger.io.claims import claim_output
from hashtagger.io.files import write_claimed
from hashtagger.review.entries import Entry, load_entries
from hashtagger.review.thumbs import QUALITY, SIZE, make_thumbnails

PAGE_SIZE = 50
CSV_NAME = "accepted.csv"


@dataclass
class SheetOptions:
    posts: str | Path | None = None  # the run's input; None: the one a Ray output folder's manifest names
    columns: CsvColumns = field(default_factory=CsvColumns)
    page_size: int = PAGE_SIZE
    thumb_size: int = SIZE
    quality: int = QUALITY
    workers: int = min(8, os.cpu_count() or 1)  # thumbnail threads
    overwrite: bool = False


@dataclass
class SheetSummary:
    path: Path
    posts: int
    skipped: int  # posts the run skipped (shown with their reason)
    thumbnails: int  # distinct images made into thumbnails
    no_thumbnail: int  # posts shown with a placeholder: no image, or one that cannot be read
    bytes: int


def _asset(name: str) -> str:
    return files("hashtagger.review").joinpath("assets").joinpath(name).read_text(encoding="utf-8")


def script_json(value: object) -> str:
    """JSON that can sit inside <script>: '<', '>' and '&' as \\u escapes, so '</script>' or '<!--' in a
    caption cannot end or comment out the element (JSON.parse turns them back)."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii") + "'"


def sheet_data(entries: list[Entry], thumbs: dict[Path, str | ImageError], source: str, page_size: int) -> dict:
    """What the page reads: the distinct thumbnails, and per post its text, thumbnail index and hashtags."""
    uris: list[str] = []
    index: dict[Path, int] = {}
    posts = []
    for e in entries:
        made = thumbs.get(e.image) if e.image is not None else None
        if isinstance(made, str) and e.image is not None:
            index.setdefault(e.image, len(uris))
            if index[e.image] == len(uris):
                uris.append(made)
        posts.append(
            {
                "id": e.id,
                "image": str(e.image.absolute()) if e.image is not None else "",
                "caption": e.caption,
                "status": e.status,
                "reason": e.reason,
                "skipped": e.skipped,
                "thumb": index[e.image] if isinstance(made, str) and e.image is not None else -1,
                "thumb_error": str(made) if isinstance(made, ImageError) else "",
                "tags": [[t, round(s, 4), seen] for t, s, seen in e.hashtags],
            }
        )
    key = hashlib.sha256(script_json(posts).encode("utf-8")).hexdigest()[:16]
    return {"source": source, "page_size": page_size, "csv_name": CSV_NAME, "key": key, "thumbs": uris, "posts": posts}


def render(data: dict, title: str) -> str:
    """The whole page: the template with its CSS, JS and data inline, and a policy that allows only those."""
    css, js = _asset("sheet.css"), _asset("sheet.js")
    csp = f"default-src 'none'; img-src data:; style-src {_csp_hash(css)}; script-src {_csp_hash(js)}; base-uri 'none'"
    page = _asset("sheet.html")
    for name, value in (("csp", csp), ("title", html.escape(title)), ("css", css), ("js", js)):
        page = page.replace("{{" + name + "}}", value)
    return page.replace("{{data}}", script_json(data))  # last: no placeholder inside user text is ever filled


def build_sheet(
    output: str | Path, sheet: str | Path, options: SheetOptions | None = None, console: Console | None = None
) -> SheetSummary:
    """Write the review sheet of a tag run's `output` (file or Ray folder) to `sheet`; a progress bar on
    `console` while thumbnails are made."""
    output, sheet, options = Path(output), Path(sheet), options or SheetOptions()
    console = console or Console(stderr=True, quiet=True)
    inputs = [output, Path(options.posts) if options.posts is not None else None]  # never written, under any name
    with claim_output(sheet, overwrite=options.overwrite, resumable=False, inputs=inputs) as claim:
        entries = load_entries(output, options.posts, options.columns)
        images = [e.image for e in entries if e.image is not None]
        thumbs = make_thumbnails(images, console, options.thumb_size, options.quality, options.workers)
        data = sheet_data(entries, thumbs, str(output), options.page_size)
        page = render(data, f"Review: {output.name}").encode("utf-8")
        write_claimed(claim, page)
    return SheetSummary(
        path=sheet,
        posts=len(entries),
        skipped=sum(e.skipped for e in entries),
        thumbnails=len(data["thumbs"]),
        no_thumbnail=sum(p["thumb"] < 0 for p in data["posts"]),
        bytes=len(page),
    )
