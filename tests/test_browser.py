"""The built book in a real browser: every generated page loads in headless Chromium, shows its
figures and contains no error output."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

import pytest

from hdpbench import paths
from hdpbench.book import NOTEBOOKS

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None and not os.environ.get("HDPBENCH_REQUIRE_BROWSER"),
    reason="Debian chromium not installed (.ci/run installs it and sets HDPBENCH_REQUIRE_BROWSER)",
)
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def served_book():
    """Build the book as `make book` does (papermill + jupyter-book, demo dataset and models) with tiny
    stage sizes and a scratch results store, then serve _build/html on localhost."""
    assert CHROMIUM, "chromium is required here (HDPBENCH_REQUIRE_BROWSER is set)"
    tiny = ["n_frames=8", "md_steps=12", "md_runs=1", "kpca_frames=6", "real_models=chgnet-0.3.0", "real_md_steps=12", "real_md_discard=2", "real_kpca_frames=6"]
    command = [sys.executable, "-m", "hdpbench.book", *(f"--param={p}" for p in tiny)]
    with tempfile.TemporaryDirectory() as results:
        environment = {**os.environ, "HDPBENCH_RESULTS": results}
        subprocess.run(command, check=True, cwd=paths.project_root(), timeout=1800, env=environment)
    html = paths.project_root() / "_build" / "html"
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(html)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            urllib.request.urlopen(base, timeout=1)
            break
        except OSError:
            time.sleep(0.1)
    yield base
    server.terminate()
    server.wait()


def rendered_dom(url: str) -> str:
    with tempfile.TemporaryDirectory() as profile:
        result = subprocess.run(
            [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=5000", "--dump-dom", url],
            capture_output=True, text=True, timeout=120,
        )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def expected_figures(name: str) -> int:
    notebook = json.loads((paths.book_dir() / "_generated" / f"{name}.ipynb").read_text())
    return sum("image/png" in output.get("data", {}) for cell in notebook["cells"] for output in cell.get("outputs", []))


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_page_renders_with_its_figures_and_no_errors(served_book, name):
    url = f"{served_book}/book/_generated/{name}.html"
    dom = rendered_dom(url)
    assert "<h1" in dom, f"{url} rendered no title"
    for marker in ("Traceback (most recent call last)", 'class="output error"', "ansi-red-fg", "Error in cell"):
        assert marker not in dom, f"{url} shows error output ({marker})"
    images = [src for src in re.findall(r'<img[^>]+src="([^"]+)"', dom) if "_images/" in src]
    assert len(images) >= expected_figures(name), f"{url}: {len(images)} figures shown, {expected_figures(name)} drawn"
    for src in images:  # each figure file is actually served
        target = urllib.request.urljoin(url, src)
        assert urllib.request.urlopen(target, timeout=10).status == 200, target


def test_landing_page_links_every_section(served_book):
    dom = rendered_dom(f"{served_book}/index.html")
    for name in NOTEBOOKS:
        assert f"_generated/{name}.html" in dom
