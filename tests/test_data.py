"""Post loading, each data-preparation rule, the vocabulary and the split."""

from __future__ import annotations

import pytest

from hashtagger.data.posts import CsvColumns, DataError, Post, load_posts
from hashtagger.data.prep import PrepOptions, build_vocab, prepare, split_groups
from hashtagger.data.text import CleaningOptions, clean_caption, extract_hashtags, is_repost, parse_tag_list


def post(caption: str, image: str = "a.jpg", tags: list[str] | None = None) -> Post:
    from pathlib import Path

    return Post(image, Path(image), caption, tags if tags is not None else extract_hashtags(caption))


# --- text rules -------------------------------------------------------------------------------------------


def test_hashtags_are_lowercased_without_hash_and_deduplicated():
    assert extract_hashtags("Storm #Sandy hits #NYC, #sandy again") == ["sandy", "nyc"]
    assert extract_hashtags("no tags, just a mail a@b.com &#39;") == []


def test_mentions_and_urls_are_dropped():
    assert clean_caption("@bob look http://t.co/x www.example.com here") == "look here"
    kept = clean_caption(
        "@bob look http://t.co/x", CleaningOptions(drop_mentions=False, drop_urls=False, drop_non_alpha=False)
    )
    assert "@bob" in kept and "http://t.co/x" in kept


def test_non_alphabetic_tokens_are_dropped():
    assert clean_caption("3 dead, 10 hurt in 2013 :( sad") == "dead hurt in sad"
    assert clean_caption("Don't panic") == "Don't panic"


def test_trailing_hashtag_block_is_dropped_but_inline_words_are_kept():
    text = "Flooding in #Hoboken tonight, stay safe #sandy #nyc #storm"
    assert clean_caption(text) == "Flooding in Hoboken tonight stay safe"
    assert clean_caption(text, CleaningOptions(keep_inline_hashtag_words=False)) == "Flooding in tonight stay safe"
    assert "sandy" in clean_caption(text, CleaningOptions(drop_trailing_hashtags=False))


def test_html_escapes_are_decoded():
    assert clean_caption("rock &amp; roll") == "rock roll"  # '&' is not a word


def test_reposts_are_recognised():
    assert is_repost("RT @cnn: huge storm")
    assert is_repost("MT: huge storm")
    assert not is_repost("ART of the storm")


def test_tag_lists_parse_in_any_separator():
    assert parse_tag_list("#a, b;C  d") == ["a", "b", "c", "d"]


# --- preparation ------------------------------------------------------------------------------------------


def rows(report):
    return dict(report)


def test_each_rule_drops_what_it_says_and_the_report_adds_up():
    posts = [
        post("one two three four five #keep #x"),
        post("RT @a: one two three four five #keep"),
        post("one two three four five #keep #x"),  # duplicate text of the first
        post("short #keep"),
        post("words words words words words #rare"),  # 'rare' falls outside a vocabulary of 2
        post("six seven eight nine ten #keep #x"),
    ]
    prepared = prepare(posts, PrepOptions(vocab_size=2, min_words=3, min_tags=1))
    report = rows(prepared.report)
    assert report["loaded"] == 6
    assert report["re-post (RT / MT)"] == 1
    assert report["duplicate text"] == 1
    assert report["fewer than 3 words"] == 1
    assert report["fewer than 1 hashtags in the vocabulary"] == 1
    assert sorted(prepared.vocab) == ["keep", "x"]
    assert len(prepared.examples) == 6 - sum(n for _, n in prepared.report[1:])


def test_min_tags_counts_only_vocabulary_hashtags():
    posts = [post("a b c #one #two"), post("d e f #one"), post("g h i #one #two")]
    prepared = prepare(posts, PrepOptions(min_tags=2))
    assert [e.post.caption for e in prepared.examples] == ["a b c #one #two", "g h i #one #two"]


def test_stop_tags_never_become_labels():
    posts = [post("a b c #nyc #sandy"), post("d e f #nyc #storm")]
    prepared = prepare(posts, PrepOptions(stop_tags=("NYC",)))
    assert "nyc" not in prepared.vocab
    assert all("nyc" not in e.labels for e in prepared.examples)


def test_vocabulary_is_most_frequent_with_reproducible_ties():
    assert build_vocab([["b", "a"], ["a"], ["c", "b"]], 2) == ["a", "b"]
    assert build_vocab([["z"], ["y"]], 1) == ["y"]


def test_filters_that_empty_the_dataset_raise_a_clear_error():
    with pytest.raises(DataError, match="no posts are left"):
        prepare([post("a b c #x")], PrepOptions(min_words=50))


def test_reposts_can_be_kept():
    posts = [post("RT @a: one two #k"), post("one two #k")]
    assert len(prepare(posts, PrepOptions(drop_reposts=False, drop_duplicate_texts=False)).examples) == 2


# --- loading ----------------------------------------------------------------------------------------------


def test_directory_loading_is_recursive_with_sidecars(tmp_path):
    (tmp_path / "sub").mkdir()
    for name in ("a.jpg", "sub/b.png", "sub/c.JPEG"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "a.txt").write_text("hello #One")
    (tmp_path / "sub/b.txt").write_text("no tags here")
    (tmp_path / "sub/b.tags").write_text("#x, y")
    (tmp_path / "notes.txt").write_text("not a post")
    posts = load_posts(tmp_path)
    assert [p.id for p in posts] == ["a.jpg", "sub/b.png", "sub/c.JPEG"]
    assert posts[0].hashtags == ["one"]
    assert posts[1].hashtags == ["x", "y"]
    assert posts[2].caption is None and posts[2].hashtags == []


def test_folder_walk_is_in_image_path_order_and_shards_read_back_the_same_posts(tmp_path):
    """The walk holds one directory at a time, yet gives the order of a sort of every image path: a subfolder
    sorts as its name + '/', so `a.jpg` comes before `a/x.jpg` and `a-b/` before `a/`."""
    from hashtagger.tagging.ray.partition import partition, read_shard

    names = [
        "a.jpg",
        "a/x.jpg",
        "a-b/y.png",
        "a b/z.JPG",
        "Z.jpg",
        "_u.bmp",
        "x.jpgdir/in.jpg",
        "s/d/q.webp",
        "s/q.gif",
    ]
    for name in names:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "a b/z.TXT").write_text("upper #no")
    (tmp_path / "a b/z.txt").write_text("lower #yes")
    (tmp_path / "link").symlink_to(tmp_path / "s", target_is_directory=True)  # not entered, as rglob does not
    posts = load_posts(tmp_path)
    assert [p.id for p in posts] == sorted(names)
    assert posts[[p.id for p in posts].index("a b/z.JPG")].hashtags == ["yes"]
    source, shards = partition(tmp_path, CsvColumns(), 4)
    assert [s.count for s in shards] == [4, 4, 1] and [s.start for s in shards] == [0, 4, 8]
    assert [p for s in shards for p in read_shard(source, s)] == posts


def test_csv_loading_with_relative_paths_and_renamed_columns(tmp_path):
    (tmp_path / "img").mkdir()
    (tmp_path / "posts.csv").write_text(
        'pic,text,tags\nimg/a.jpg,"hello, ""world""\nline two #in",x y\nimg/b.jpg,only #cap,\n'
    )
    posts = load_posts(tmp_path / "posts.csv", CsvColumns(image="pic", caption="text", hashtags="tags"))
    assert posts[0].image == tmp_path / "img/a.jpg"
    assert posts[0].caption == 'hello, "world"\nline two #in'
    assert posts[0].hashtags == ["x", "y"]
    assert posts[1].hashtags == ["cap"]  # empty hashtags cell: read from the caption


def test_csv_without_needed_column_names_it(tmp_path):
    (tmp_path / "p.csv").write_text("image,text\na.jpg,hi\n")
    with pytest.raises(DataError, match="no column 'caption'"):
        load_posts(tmp_path / "p.csv")


def test_missing_data_path(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_posts(tmp_path / "nope")


def test_shared_dataset_loads_with_hashtags_from_captions(shared_posts_csv):
    posts = load_posts(shared_posts_csv)
    assert len(posts) == 8724
    assert posts[0].id == "324597532548276224"  # the post_id column
    # the dataset's README counts 6,037 posts with a '#'; '&#39;'-style escapes and 'a#b' are not hashtags
    assert 6000 < sum(bool(p.hashtags) for p in posts) <= 6037


# --- split ------------------------------------------------------------------------------------------------


def test_split_is_by_group_deterministic_and_about_8_1_1():
    groups = [f"img{i % 150}" for i in range(1000)]  # 150 images, shared by several posts each
    split = split_groups(groups, seed=3)
    sets = [set(v) for v in split.values()]
    assert not (sets[0] & sets[1] or sets[0] & sets[2] or sets[1] & sets[2])
    assert set().union(*sets) == set(groups)
    assert split == split_groups(groups, seed=3)
    assert split != split_groups(groups, seed=4)
    share = {k: sum(g in set(v) for g in groups) / len(groups) for k, v in split.items()}
    assert 0.7 < share["train"] < 0.9 and 0.05 < share["val"] < 0.15 and 0.05 < share["test"] < 0.15


def test_split_keeps_val_and_test_non_empty_with_one_dominant_image():
    groups = ["big"] * 900 + ["a"] * 10 + ["b"] * 10 + ["c"] * 10
    split = split_groups(groups, seed=0)
    assert all(split[name] for name in ("train", "val", "test"))


def test_split_validation_holds_several_images_when_one_image_dominates():
    # Re-shared data: one image carries more posts than validation's whole share. Validation must still see
    # several images (model selection on one picture cannot tell whether the model uses pictures).
    groups = ["viral"] * 120 + [f"img{i}" for i in range(200) for _ in range(4)]
    for seed in range(5):
        split = split_groups(groups, seed=seed)
        assert "viral" not in split["val"]
        assert len(split["val"]) >= 10
        val_posts = sum(g in set(split["val"]) for g in groups)
        assert 0.05 * len(groups) < val_posts <= 0.1 * len(groups) + 4
