"""Headless Debian Chromium for the browser tests, driven by Selenium through
/usr/bin/chromedriver (never Selenium Manager, which would download a browser).

`make test` installs Debian's chromium and chromium-driver when they are missing
(`.ci/install-chromium`, as root with apt-get only); without them a browser test skips and
says why. Each test saves a screenshot of the pages it walks under var/screenshots/.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
SCREENSHOTS = ROOT / "var" / "screenshots"


def chromium_available() -> bool:
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        # The same step `make test` runs: Debian's packages, as root with apt-get only.
        subprocess.run(["bash", str(ROOT / ".ci" / "install-chromium")], check=False, timeout=600)
    return CHROMIUM.exists() and CHROMEDRIVER.exists()


@contextmanager
def chromium(profile: Path, downloads: Path) -> Iterator[object]:
    """A headless Chromium that saves downloads to `downloads` without asking."""
    if not chromium_available():
        pytest.skip(
            "no /usr/bin/chromium nor /usr/bin/chromedriver, and they could not be installed "
            "(apt-get install chromium chromium-driver needs root and Debian's packages)"
        )
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1400,1200",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    options.add_experimental_option(
        "prefs",
        {
            "download.default_directory": str(downloads),
            "download.prompt_for_download": False,
            "plugins.always_open_pdf_externally": True,
        },
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SE_OFFLINE", "true")  # belt and braces: Selenium Manager never fetches
        driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.execute_cdp_cmd(
        "Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)}
    )
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def screenshot(driver, name: str) -> Path:
    """The whole page as var/screenshots/<name>.png (the window grown to the page's height)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1400, max(900, min(int(height) + 120, 4000)))
    path = SCREENSHOTS / f"{name}.png"
    driver.save_screenshot(str(path))
    return path
