"""Headless Chromium from the OS packages (`apt-get install chromium chromium-driver`) driven by Selenium, for
the review sheet's tests and benchmarks/review_sheet.py. Nothing is downloaded: the browser and its driver are
named explicitly (Selenium Manager never runs) and Chromium's own network services are off."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

INSTALL = "apt-get install chromium chromium-driver"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,1000",
)


def missing() -> str | None:
    """Why no browser can be started here, or None."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[test]')"
    if not (shutil.which("chromium") or shutil.which("chromium-browser")) or not shutil.which("chromedriver"):
        return f"headless Chromium not found; install it with `{INSTALL}`"
    return None


def chromium(downloads: Path | None = None):
    """A fresh headless Chromium (its own profile folder) whose downloads go to `downloads`."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ["SE_OFFLINE"] = "true"  # should Selenium Manager ever run, it may not download anything
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or shutil.which("chromium-browser") or "/usr/bin/chromium"
    for flag in FLAGS:
        options.add_argument(flag)
    profile = tempfile.mkdtemp(prefix="hashtagger-chromium-")
    options.add_argument("--user-data-dir=" + profile)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    if downloads is not None:
        options.add_experimental_option(
            "prefs", {"download.default_directory": str(downloads), "download.prompt_for_download": False}
        )
    service = Service(executable_path=shutil.which("chromedriver") or "/usr/bin/chromedriver")
    driver = webdriver.Chrome(options=options, service=service)
    if downloads is not None:
        driver.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    driver.profile_dir = profile
    return driver


def close(driver) -> None:
    """Quit the browser and remove its profile folder."""
    driver.quit()
    shutil.rmtree(driver.profile_dir, ignore_errors=True)
