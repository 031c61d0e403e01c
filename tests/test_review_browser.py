"""The review sheet in a real browser: headless Chromium from the OS packages, driven by Selenium, opens a sheet
of a real `tag` run (the shipped model on examples/posts) from disk, and a person's review is played on it.
Skipped, saying how to install it, where Chromium is absent."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
from browser import chromium, close, missing

from hashtagger.data.posts import load_posts
from hashtagger.review.sheet import SheetOptions, build_sheet
from hashtagger.tagging.options import TagOptions
from hashtagger.tagging.run import tag
from hashtagger.tagging.sidecars import sidecars_from

REPO = Path(__file__).resolve().parents[1]
SCRIPT_CAPTION = "Look </script><script>window.pwned = 1</script> <b>bold</b> & <!-- storm #sandy"

pytestmark = pytest.mark.skipif(missing() is not None, reason=missing() or "")


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[Path, Path]:
    """examples/posts (one caption holding markup, one image that is not one) tagged by the shipped model."""
    root = tmp_path_factory.mktemp("review")
    posts = root / "posts"
    shutil.copytree(REPO / "examples" / "posts", posts)
    (posts / "eclipse.txt").write_text(SCRIPT_CAPTION)
    (posts / "broken.jpg").write_bytes(b"not a jpeg")
    output = root / "tags.jsonl"
    tag(posts, output, None, TagOptions(model=REPO / "exported", device="cpu", threads=1))
    return posts, output


@pytest.fixture(scope="module")
def downloads(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("downloads")


@pytest.fixture(scope="module")
def browser(downloads):
    driver = chromium(downloads)
    yield driver
    close(driver)


def open_sheet(browser, sheet: Path) -> None:
    browser.get(sheet.as_uri())
    wait(lambda: browser.execute_script("return document.querySelectorAll('article.post').length") > 0)


def wait(condition, seconds: float = 10.0):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("timed out waiting for the page")


def card(browser, post_id: str):
    from selenium.webdriver.common.by import By

    for article in browser.find_elements(By.CSS_SELECTOR, "article.post"):
        if article.find_element(By.CSS_SELECTOR, ".pid").text == post_id:
            return article
    raise AssertionError(f"no card for {post_id}")


def set_input(browser, element_id: str, value: str) -> None:
    """A filter's value set as typing would, with its input event."""
    browser.execute_script(
        "const e = document.getElementById(arguments[0]); e.value = arguments[1]; e.dispatchEvent(new Event('input'))",
        element_id,
        value,
    )


def tag_names(article) -> list[str]:
    from selenium.webdriver.common.by import By

    return [t.get_attribute("data-tag") for t in article.find_elements(By.CSS_SELECTOR, ".tag")]


def press(browser, keys: str) -> None:
    from selenium.webdriver.common.action_chains import ActionChains

    ActionChains(browser).send_keys(keys).perform()


def test_review_accept_reject_add_and_save_a_csv_train_reads(browser, run, downloads, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    posts, output = run
    sheet = tmp_path / "sheet.html"
    build_sheet(output, sheet, SheetOptions(posts=posts))
    open_sheet(browser, sheet)

    street = card(browser, "flooded street.png")
    img = street.find_element(By.CSS_SELECTOR, ".thumb img")
    assert wait(lambda: browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth", img)) > 0
    # The caption with markup is text: no element, no script run, shown exactly.
    eclipse = card(browser, "eclipse.jpg")
    caption = eclipse.find_element(By.CSS_SELECTOR, ".caption")
    assert caption.get_attribute("textContent") == SCRIPT_CAPTION
    assert caption.find_elements(By.CSS_SELECTOR, "*") == []
    assert browser.execute_script("return window.pwned") is None
    # The skipped post is listed with its reason and a placeholder.
    broken = card(browser, "broken.jpg")
    assert "skipped: not an image" in broken.find_element(By.CSS_SELECTOR, ".status").text
    assert broken.find_elements(By.CSS_SELECTOR, ".placeholder")

    # Mouse: accept the street's first suggestion, reject its second.
    tags = tag_names(street)
    street.find_elements(By.CSS_SELECTOR, ".tag .acc")[0].click()
    card(browser, "flooded street.png").find_elements(By.CSS_SELECTOR, ".tag .rej")[1].click()
    rows = card(browser, "flooded street.png").find_elements(By.CSS_SELECTOR, ".tag")
    assert "accepted" in rows[0].get_attribute("class") and "rejected" in rows[1].get_attribute("class")
    # Add two hashtags, one typed with '#', capitals and a comma.
    box = card(browser, "flooded street.png").find_element(By.CSS_SELECTOR, "input.add")
    box.send_keys("#Shark_Attack, flood", Keys.ENTER)
    chips = [c.text for c in card(browser, "flooded street.png").find_elements(By.CSS_SELECTOR, ".chip")]
    assert [c.rstrip("×").strip() for c in chips] == ["#shark_attack", "#flood"]
    box = card(browser, "flooded street.png").find_element(By.CSS_SELECTOR, "input.add")
    box.send_keys(Keys.ESCAPE)

    # Keyboard: the marathon post (j from the street) gets its first suggestion accepted, its second rejected.
    marathon_tags = tag_names(card(browser, "marathon.jpg"))
    card(browser, "flooded street.png").find_element(By.CSS_SELECTOR, ".pid").click()
    press(browser, "jar")
    marathon = card(browser, "marathon.jpg")
    assert "current" in marathon.get_attribute("class")
    rows = marathon.find_elements(By.CSS_SELECTOR, ".tag")
    assert "accepted" in rows[0].get_attribute("class") and "rejected" in rows[1].get_attribute("class")

    browser.save_screenshot(str(tmp_path / "review-sheet.png"))
    browser.find_element(By.ID, "save").click()
    saved = downloads / "accepted.csv"
    wait(lambda: saved.is_file() and saved.stat().st_size > 0)
    reviewed = {p.id: p for p in load_posts(saved)}  # the reader `hashtagger train` uses
    assert reviewed["flooded street.png"].hashtags == [tags[0], "shark_attack", "flood"]
    assert reviewed["marathon.jpg"].hashtags == [marathon_tags[0]]
    assert set(reviewed) == {"flooded street.png", "marathon.jpg"}
    assert reviewed["flooded street.png"].image == (posts / "flooded street.png").resolve()
    assert reviewed["flooded street.png"].caption == (posts / "flooded street.txt").read_text()

    # The sidecars written from the saved CSV and the folder read back agree with it.
    assert sidecars_from(saved, "overwrite") == {"written": 2}
    folder = {p.id: p.hashtags for p in load_posts(posts)}
    assert {k: folder[k] for k in reviewed} == {k: p.hashtags for k, p in reviewed.items()}
    saved.unlink()

    assert browser.execute_script("return performance.getEntriesByType('resource').length") == 0
    assert not [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]


def test_filters_pages_seen_badges_and_choices_kept_on_reload(browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    from hashtagger.tagging.writers import write_file

    posts = tmp_path / "posts.csv"  # a CSV naming images that are not there: every card shows the placeholder
    posts.write_text("image,caption\n" + "".join(f"p{i}.png,post {i}\n" for i in range(7)) + "x.png,gone\n")
    records = []
    for i in range(7):
        tags = [{"tag": "sandy", "score": 0.9 - i / 10, "seen": True}, {"tag": f"new{i}", "score": 0.05, "seen": False}]
        records.append({"id": f"p{i}.png", "status": "ok", "reason": "ok", "hashtags": tags})
    skipped = {"id": "x.png", "status": "skipped: image file not found", "reason": "image_not_found", "hashtags": []}
    records.append(skipped)
    write_file(tmp_path / "tags.json", records, "json")
    sheet = tmp_path / "sheet.html"
    build_sheet(tmp_path / "tags.json", sheet, SheetOptions(posts=posts, page_size=3))
    open_sheet(browser, sheet)

    def shown() -> list[str]:
        return [e.text for e in browser.find_elements(By.CSS_SELECTOR, "article.post .pid")]

    assert shown() == ["p0.png", "p1.png", "p2.png"] and browser.find_element(By.ID, "page").text == "page 1 of 3"
    first = browser.find_elements(By.CSS_SELECTOR, "article.post")[0]
    badges = [b.text for b in first.find_elements(By.CSS_SELECTOR, ".seen")]
    assert badges == ["seen in training", "not in training"]
    press(browser, "jjj")  # past the page's last post: the next page
    assert shown() == ["p3.png", "p4.png", "p5.png"]
    press(browser, "rA")  # the current post: its first suggestion rejected, the rest accepted
    current = browser.find_element(By.CSS_SELECTOR, "article.post.current")
    rows = current.find_elements(By.CSS_SELECTOR, ".tag")
    assert ["rejected" in rows[0].get_attribute("class"), "accepted" in rows[1].get_attribute("class")] == [True, True]
    press(browser, "n")
    assert shown() == ["p6.png", "x.png"]
    browser.find_element(By.ID, "f-tag").send_keys("new5")
    assert shown() == ["p5.png"]
    set_input(browser, "f-tag", "")
    Select(browser.find_element(By.ID, "f-status")).select_by_value("skipped")
    assert shown() == ["x.png"]
    Select(browser.find_element(By.ID, "f-status")).select_by_value("reviewed")
    assert shown() == ["p3.png"]
    Select(browser.find_element(By.ID, "f-status")).select_by_value("all")
    set_input(browser, "f-score", "0.65")
    assert shown() == ["p0.png", "p1.png", "p2.png"] and browser.find_element(By.ID, "page").text == "page 1 of 1"
    browser.refresh()  # the choices survive a reload (local storage)
    wait(lambda: shown())
    Select(browser.find_element(By.ID, "f-status")).select_by_value("reviewed")
    assert shown() == ["p3.png"]
    kept = browser.find_elements(By.CSS_SELECTOR, "article.post .tag")
    assert ["rejected" in kept[0].get_attribute("class"), "accepted" in kept[1].get_attribute("class")] == [True, True]
