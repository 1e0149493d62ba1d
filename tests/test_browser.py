"""The built book in a real browser, with the network blocked as on a laptop offline: every
generated page loads in headless Chromium, renders its formulas with the book's own MathJax, shows
its figures each with a link to its data, and shows readers no error output, stderr, NaN or None."""

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
from html.parser import HTMLParser

import pytest

from hdpbench.book.build import NOTEBOOKS
from hdpbench.core import paths

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None and not os.environ.get("HDPBENCH_REQUIRE_BROWSER"),
    reason="Debian chromium not installed (.ci/run installs it and sets HDPBENCH_REQUIRE_BROWSER)",
)
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
    # no host resolves except the book's own server: a CDN script would fail to load, as offline
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
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
    tiny = ["n_frames=8", "md_steps=12", "md_runs=1", "kpca_frames=6", "real_models=chgnet-0.3.0", "isolated_models=sevennet-0", "real_md_steps=12", "real_md_discard=2", "real_kpca_frames=6",
            "phonondb_models=chgnet-0.3.0", "phonondb_n_per_halide=1", "abx3_compounds=KMgF3"]
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


class ReaderText(HTMLParser):
    """The text a reader sees: everything but code cells' input, scripts and styles (folded code is
    still code, and `compounds = None` in a parameter cell is not a missing value shown to readers)."""

    SKIPPED_CLASSES = {"cell_input", "highlight"}
    SKIPPED_TAGS = {"script", "style", "pre", "code", "mjx-assistive-mml"}
    VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}

    def __init__(self):
        super().__init__()
        self.stack: list[bool] = []  # per open element: whether it (or a parent) is skipped
        self.parts: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag in self.VOID:
            return
        classes = set((dict(attrs).get("class") or "").split())
        skipped = (self.stack and self.stack[-1]) or tag in self.SKIPPED_TAGS or bool(classes & self.SKIPPED_CLASSES)
        self.stack.append(bool(skipped))

    def handle_endtag(self, tag):
        if tag not in self.VOID and self.stack:
            self.stack.pop()

    def handle_data(self, data):
        if not (self.stack and self.stack[-1]):
            self.parts.append(data)


def reader_text(dom: str) -> str:
    parser = ReaderText()
    parser.feed(dom)
    return " ".join(parser.parts)


def figures_and_data_links(dom: str) -> list[str]:
    """In page order: 'figure' for every generated figure, 'data' for every CSV download link."""
    tokens = re.finditer(r'<img[^>]+src="[^"]*_images/[^"]+"|<a[^>]+href="[^"]+\.csv"', dom)
    return ["figure" if token.group(0).startswith("<img") else "data" for token in tokens]


def expected_figures(name: str) -> int:
    notebook = json.loads((paths.book_dir() / "_generated" / f"{name}.ipynb").read_text())
    return sum("image/png" in output.get("data", {}) for cell in notebook["cells"] for output in cell.get("outputs", []))


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_page_renders_with_its_figures_and_no_errors(served_book, name):
    url = f"{served_book}/book/_generated/{name}.html"
    dom = rendered_dom(url)
    assert "<h1" in dom, f"{url} rendered no title"
    for marker in ("Traceback (most recent call last)", 'class="output error"', "ansi-red-fg", "Error in cell",
                   'class="output stderr"', "Warning:"):
        assert marker not in dom, f"{url} shows error, warning or stderr output ({marker})"
    text = reader_text(dom)
    shown = sorted(set(re.findall(r"\b(NaN|nan|None|<NA>)\b", text)))
    assert not shown, f"{url} shows {shown} to readers: " + " | ".join(
        text[max(m.start() - 60, 0): m.end() + 20] for m in re.finditer(r"\b(NaN|nan|None|<NA>)\b", text)
    )[:600]
    formulas = len(re.findall(r'class="math notranslate nohighlight"', dom))
    if formulas:  # MathJax replaced the TeX source with its own output, from the book's own copy
        assert "<mjx-container" in dom, f"{url}: {formulas} formulas left as TeX source (MathJax did not run offline)"
    order = figures_and_data_links(dom)
    for k, token in enumerate(order):
        if token == "figure":
            assert "data" in order[k + 1:k + 2], f"{url}: figure {order[:k + 1].count('figure')} has no CSV data link right below it"
    images = [src for src in re.findall(r'<img[^>]+src="([^"]+)"', dom) if "_images/" in src]
    assert len(images) >= expected_figures(name), f"{url}: {len(images)} figures shown, {expected_figures(name)} drawn"
    for src in images:  # each figure file is actually served
        target = urllib.request.urljoin(url, src)
        assert urllib.request.urlopen(target, timeout=10).status == 200, target


def test_mathjax_is_served_by_the_book_itself(served_book):
    dom = rendered_dom(f"{served_book}/book/_generated/sigma.html")
    scripts = re.findall(r'<script[^>]+src="([^"]*mathjax[^"]*)"', dom, flags=re.IGNORECASE)
    assert scripts and all(not src.startswith(("http://", "https://", "//")) for src in scripts), scripts
    assert urllib.request.urlopen(urllib.request.urljoin(f"{served_book}/book/_generated/sigma.html", scripts[0]), timeout=10).status == 200


def test_reader_text_skips_code_but_not_outputs():
    dom = ('<div class="cell_input"><pre>compounds = None</pre></div><div class="cell_output"><p>σ = NaN</p></div>'
           '<script>var x = None;</script><p>all <b>fine</b><br>here</p>')
    text = reader_text(dom)
    assert "compounds" not in text and "var x" not in text
    assert "NaN" in text and "fine" in text and "here" in text
    assert figures_and_data_links('<img src="../_images/a.png"><a href="x/fig.csv">d</a><img src="_images/b.png">') == ["figure", "data", "figure"]


def test_landing_page_links_every_section(served_book):
    dom = rendered_dom(f"{served_book}/index.html")
    for name in NOTEBOOKS:
        assert f"_generated/{name}.html" in dom
