"""What pages show readers: significant digits, no NaN/None, human column names, CSV beside the page."""

from __future__ import annotations

import math
import os

import numpy as np
import pandas as pd
import pytest

from hdpbench.book import build as book
from hdpbench.book import page


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0.123456, "0.123"),
        (12345.678, "12346"),
        (-0.0004567, "−0.000457"),
        (1.5e-7, "1.50e−07"),
        (3, "3"),
        (float("nan"), "missing"),
        (None, "missing"),
        (0.0, "0"),
        ("Cs2AgBiBr6", "Cs2AgBiBr6"),
        (True, "True"),
    ],
)
def test_significant_digits_and_missing_values(value, text):
    assert page.significant(value) == text


def test_readable_table_has_human_names_units_and_no_nan():
    frame = pd.DataFrame({"compound": ["A", "B"], "rmse_omega2_thz2": [0.123456, np.nan], "new_column": [1.0, 2.0]})
    html = page.readable(frame, labels={"new_column": "new (eV)"}).to_html()
    assert "RMSE(ω²) (THz²)" in html and "new (eV)" in html and "rmse_omega2_thz2" not in html
    assert "0.123" in html and "missing" in html
    assert "nan" not in html.lower()
    transposed = page.readable(frame.set_index("compound").T, index=True).to_html()
    assert "RMSE(ω²) (THz²)" in transposed  # row labels of a transposed table are relabelled too
    assert f"padding: {page.CELL_PADDING}" in html  # cells do not run together ("data_overview5.80")


def test_figure_data_lands_beside_the_page(tmp_path, monkeypatch):
    monkeypatch.setenv(page.PAGE_DIR_VARIABLE, str(tmp_path))
    assert page.figure_data(pd.DataFrame({"x": [1.5, math.pi]}), "phonons", "fig1a") is None  # nothing printed on the page
    written = pd.read_csv(tmp_path / "phonons_data" / "fig1a.csv")
    assert written["x"].tolist() == [1.5, math.pi]
    page.figure_data(pd.DataFrame({"y": [1]}), "real_test", "summary", folder=tmp_path / "elsewhere")
    assert (tmp_path / "elsewhere" / "summary.csv").is_file()


def test_rerun_instructions_name_the_page_and_the_commands():
    text = book.rerun_instructions("sigma")
    assert 'make book PAGES="sigma"' in text and "jupytext --to ipynb notebooks/sigma.py" in text and "jupyter lab" in text


def test_book_refuses_an_unknown_page_with_a_usage_error(capsys):
    with pytest.raises(SystemExit) as stop:
        book.main(["--pages", "phonons nosuchpage"])
    assert stop.value.code == 2
    assert "nosuchpage" in capsys.readouterr().err


def test_pages_get_their_own_matplotlib_config_unless_one_is_set(tmp_path, monkeypatch):
    monkeypatch.setenv("HDPBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("MPLCONFIGDIR", raising=False)
    book.use_project_matplotlib_config()
    assert os.environ["MPLCONFIGDIR"] == str(tmp_path / "cache" / "matplotlib") and (tmp_path / "cache" / "matplotlib").is_dir()
    monkeypatch.setenv("MPLCONFIGDIR", str(tmp_path / "mine"))
    book.use_project_matplotlib_config()
    assert os.environ["MPLCONFIGDIR"] == str(tmp_path / "mine")
