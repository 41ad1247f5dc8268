"""Headless Chromium for the tests that open the HTML report as a user would: the rendered
DOM (after the browser parsed the page) and a screenshot.

Chromium comes from Debian's packages (``apt-get install chromium``; ``.ci/run`` installs
it). Without it these tests skip saying so, unless ``FL_REQUIRE_BROWSER=1`` (set by CI)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

CANDIDATES = ("chromium", "chromium-browser", "google-chrome")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         "--allow-file-access-from-files"]


def chromium() -> str:
    found = os.environ.get("FL_CHROMIUM") or next(
        (path for name in CANDIDATES if (path := shutil.which(name))), None)
    if found:
        return found
    message = "no headless Chromium: apt-get install chromium (or set FL_CHROMIUM)"
    if os.environ.get("FL_REQUIRE_BROWSER") == "1":
        pytest.fail(message)
    pytest.skip(message)


def rendered_dom(page: Path) -> str:
    """The page's DOM as Chromium built it."""
    result = subprocess.run([chromium(), *FLAGS, "--dump-dom", page.resolve().as_uri()],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def screenshot(page: Path, target: Path, size: tuple[int, int] = (1200, 2400)) -> Path:
    result = subprocess.run([chromium(), *FLAGS, f"--window-size={size[0]},{size[1]}",
                             f"--screenshot={target}", page.resolve().as_uri()],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and target.is_file(), result.stderr[-2000:]
    return target
