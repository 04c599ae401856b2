"""Headless Chromium driven by selenium (Debian's chromium and chromium-driver, which
.ci/setup.sh installs): the browser of the in-browser benchmark and of the page tests."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync")
PAGE_LOAD_TIMEOUT_S = 60


def chromium_missing() -> str | None:
    """Why headless Chromium cannot start here, or None."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[dev]')"
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        return "chromium and chromium-driver are not installed (.ci/setup.sh installs them)"
    return None


@contextlib.contextmanager
def headless_chromium() -> Iterator[object]:
    """A selenium WebDriver on headless Chromium, quit afterwards."""
    from selenium import webdriver

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(PAGE_LOAD_TIMEOUT_S)
    try:
        yield driver
    finally:
        driver.quit()
