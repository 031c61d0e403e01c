"""Where pretrained weights come from: a size preset, a local folder, or a Hugging Face hub id. No torch.

A hub that cannot be reached makes transformers retry for half a minute per file. One short probe up
front switches the hub library to its offline mode instead, so models already in the local cache still
load and anything else fails at once, with a line that says why.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import urlparse

from hashtagger.errors import DataError

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")  # owner/name
PROBE_SECONDS = 3.0


def source_kind(name: str, option: str, presets: Iterable[str]) -> str:
    """'preset', 'folder' or 'hub' for a --base-model / --backbone value; DataError for a name that is none."""
    presets = list(presets)
    if name in presets:
        return "preset"
    if Path(name).expanduser().exists():
        return "folder"
    if HUB_ID.match(name):
        return "hub"
    raise DataError(
        f"{option} '{name}': unknown preset (presets: {', '.join(presets)}); "
        "not a folder either, and a hub id looks like owner/name"
    )


def offline_unless_reachable(timeout: float = PROBE_SECONDS) -> str | None:
    """Probe the hub once; when it cannot be reached, turn on the hub's offline mode for this process.
    Returns why the hub is not used (None: it is reachable)."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return "HF_HUB_OFFLINE is set"
    proxy = os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy")
    target = urlparse(proxy if proxy else constants.ENDPOINT)
    host, port = target.hostname or "huggingface.co", target.port or (443 if target.scheme == "https" else 80)
    try:
        socket.create_connection((host, port), timeout=timeout).close()
        return None
    except OSError as e:
        constants.HF_HUB_OFFLINE = True  # read at each call by huggingface_hub and transformers
        return f"{host}:{port} cannot be reached ({e.strerror or e or type(e).__name__})"
