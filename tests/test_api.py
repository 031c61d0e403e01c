"""The public Python API: `from hashtagger import Tagger`, a session over an exported bundle whose records
are the CLI's, and whose import stays light."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import types

import helpers_images as imgs
import pytest
from typer.testing import CliRunner

from hashtagger.cli.main import app
from hashtagger.errors import ImageError

CODE = textwrap.dedent("""
    import sys
    import hashtagger
    light = not {"onnxruntime", "torch", "transformers"} & set(sys.modules)
    from hashtagger import Tag, Tagger
    print(light, "torch" in sys.modules, Tagger.__name__, Tag.__name__)
""")


def test_import_is_light_and_tagger_never_loads_torch():
    out = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, timeout=60, check=True).stdout
    assert out.split() == ["True", "False", "Tagger", "Tag"]


@pytest.fixture(scope="module")
def tagger(tiny_bundle):
    from hashtagger import Tagger

    return Tagger.open(tiny_bundle, device="cpu")


def test_tag_many_gives_the_records_the_cli_writes(tagger, posts_dir, tiny_bundle, tmp_path):
    out = tmp_path / "out.json"
    result = CliRunner().invoke(
        app, ["tag", str(posts_dir), "--model", str(tiny_bundle), "--device", "cpu", "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    records = tagger.tag_many(posts_dir)
    assert isinstance(records, types.GeneratorType)  # an iterator: records come as batches finish
    assert list(records) == json.loads(out.read_text())["records"]


def test_tag_one_post_gives_tags_best_first(tagger, posts_dir):
    image = sorted(posts_dir.glob("*.png"))[0]
    caption = image.with_suffix(".txt").read_text()
    one = tagger.tag(image, caption)
    tags = one.tags
    assert len(tags) == 5 and all(type(t).__name__ == "Tag" for t in tags)
    assert [t.score for t in tags] == sorted((t.score for t in tags), reverse=True)
    (record,) = tagger.tag_many([(image, caption)])
    assert type(record) is type(one) and record == one  # tag() and tag_many() give the same record type
    assert record.reason == "ok" and [{"tag": t.tag, "score": t.score} for t in tags] == record["hashtags"]
    assert tagger.provider == "CPUExecutionProvider"


def test_tag_one_unusable_image_raises_with_its_code(tagger, tmp_path):
    bad = tmp_path / "truncated.jpg"
    imgs.truncated_jpeg(bad)
    with pytest.raises(ImageError, match="corrupt") as raised:
        tagger.tag(bad, "a cat")
    assert raised.value.code == "image_corrupt"
    with pytest.raises(ImageError) as missing:
        tagger.tag(tmp_path / "nowhere.png", "a cat")
    assert missing.value.code == "image_not_found"
