"""The model registry: the paper's four models, mace-torch's cache naming, clear errors offline."""

from __future__ import annotations

import hashlib
import json
import urllib.error

import pytest

from hdpbench import cli
from hdpbench.core.errors import DataError
from hdpbench.models.registry import (
    ModelSpec,
    ModelUnavailableError,
    UnknownModelError,
    checkpoint_path,
    expected_checkpoint_path,
    get_model_spec,
    registered_models,
)

PAPER_MODELS = {  # paper label -> (mace_mp name, release file, licence), spec §2
    "matpes-pbe-omat-ft": ("mace-matpes-pbe-0", "mace_matpes_0/MACE-matpes-pbe-omat-ft.model", "ASL"),
    "mpa-0-medium": ("medium-mpa-0", "mace_mpa_0/mace-mpa-0-medium.model", "MIT"),
    "mp-0b3-medium": ("medium-0b3", "mace_mp_0b3/mace-mp-0b3-medium.model", "MIT"),
    "omat-0-medium": ("medium-omat-0", "mace_omat_0/mace-omat-0-medium.model", "ASL"),
}


@pytest.fixture(autouse=True)
def _private_mace_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))


def test_paper_models_are_registered_in_paper_order_with_release_urls():
    specs = registered_models()
    assert [s.label for s in specs.values()][:4] == list(PAPER_MODELS)
    for label, (name, release_file, licence) in PAPER_MODELS.items():
        spec = specs[name]
        assert spec.label == label and spec.license == licence and spec.dtype == "float32"
        assert spec.url.endswith(release_file)
        # The registry URL is the one mace-torch itself downloads for that name.
        from hdpbench.core.torch_setup import import_mace

        import_mace()
        from mace.calculators.foundations_models import mace_mp_urls

        assert mace_mp_urls[name] == spec.url


def test_cache_path_is_where_mace_torch_looks(tmp_path):
    from mace.tools.utils import get_cache_dir

    spec = registered_models()["medium-omat-0"]
    assert expected_checkpoint_path(spec) == get_cache_dir() / "maceomat0mediummodel"
    assert str(expected_checkpoint_path(spec)).startswith(str(tmp_path / "xdg" / "mace"))


def test_offline_download_error_says_which_file_to_place_where(monkeypatch, tmp_path):
    from hdpbench.core.torch_setup import import_mace

    import_mace()
    import mace.calculators.foundations_models as foundations

    def offline(url, filename, *args, **kwargs):
        raise urllib.error.URLError("network unreachable")

    monkeypatch.setattr(foundations, "_urlretrieve_with_timeout", offline)
    spec = registered_models()["medium-mpa-0"]
    with pytest.raises(ModelUnavailableError) as caught:
        checkpoint_path(spec)
    message = str(caught.value)
    assert "Download https://github.com/ACEsuit/mace-mp/releases/download/mace_mpa_0/mace-mpa-0-medium.model" in message
    assert f"save it as {tmp_path / 'xdg' / 'mace' / 'macempa0mediummodel'}" in message
    assert "network unreachable" in message


def test_placed_file_is_found_and_checked_against_its_sha256(tmp_path):
    spec = registered_models()["medium-0b3"]
    target = expected_checkpoint_path(spec)
    target.parent.mkdir(parents=True)
    target.write_bytes(b"weights")
    assert checkpoint_path(spec, download=False) == target
    spec.sha256 = hashlib.sha256(b"weights").hexdigest()
    assert checkpoint_path(spec, download=False) == target
    spec.sha256 = "0" * 64
    with pytest.raises(DataError, match="does not match the registered"):
        checkpoint_path(spec, download=False)


def test_local_checkpoint_path_and_unknown_names(tmp_path):
    local = tmp_path / "my-model.model"
    local.write_bytes(b"x")
    spec = get_model_spec(local)
    assert spec.kind == "mace" and checkpoint_path(spec) == local.resolve()
    with pytest.raises(UnknownModelError, match="registered models are"):
        get_model_spec("no-such-model")
    with pytest.raises(ModelUnavailableError, match="Place the checkpoint at"):
        checkpoint_path(ModelSpec(name="gone", path=str(tmp_path / "gone.model")))


def test_models_list_json(capsys):
    assert cli.main(["models", "list", "--json"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    for name, _, _ in PAPER_MODELS.values():
        assert {"name", "label", "license", "available"} <= set(rows[name])
        assert rows[name]["available"] is False


def test_figures_name_models_by_label_or_file_stem(tmp_path):
    from hdpbench.models.registry import display_name

    assert display_name("medium-omat-0") == "omat-0-medium"  # the paper's own label
    checkpoint = tmp_path / "runs" / "my-model.model"
    assert display_name(str(checkpoint)) == "my-model"


TABLE1 = {  # paper label -> (elements covered, training dataset, level of theory, notes), Yang et al. Table 1
    "matpes-pbe-omat-ft": (89, "MATPES-PBE", "DFT (PBE)", "No +U correction"),
    "mpa-0-medium": (89, "MPtrj + sAlex", "DFT (PBE+U)", "Improved accuracy particularly high pressure stabilities"),
    "mp-0b3-medium": (89, "MPtrj", "DFT (PBE+U)", "Improved phonon properties"),
    "omat-0-medium": (89, "OMAT", "DFT (PBE+U)", "Excellent phonon properties"),
}


def test_paper_models_carry_the_columns_of_table_1(capsys):
    from hdpbench.book.analysis import table1

    table = table1()
    assert list(table.columns) == ["Model name", "Elements covered", "Training dataset", "Level of theory", "Notes"]
    assert [tuple(row) for row in table.iloc[:4].itertuples(index=False)] == [(label, *values) for label, values in TABLE1.items()]
    assert cli.main(["models", "list", "--json"]) == 0
    rows = {row["label"]: row for row in json.loads(capsys.readouterr().out)}
    for label, (elements, training, theory, notes) in TABLE1.items():
        assert (rows[label]["elements_covered"], rows[label]["training_data"], rows[label]["level_of_theory"], rows[label]["notes"]) == (
            elements, training, theory, notes)


def test_table_1_of_a_fine_tuned_model_falls_back_to_its_base_and_counts_listed_elements():
    from hdpbench.book.analysis import table1

    table = table1(["demo-small-data", "demo-small-data-pft", "kcl-small"])
    assert table.loc["demo-small-data-pft", "Elements covered"] == table.loc["demo-small-data", "Elements covered"] == 15
    assert table.loc["demo-small-data-pft", "Level of theory"] == "GFN1-xTB (tblite)"
    assert table.loc["demo-small-data-pft", "Notes"] == "Fine-tuned here (PFT) from demo-small-data"
    assert table.loc["kcl-small", "Elements covered"] == 2  # from its `elements: [K, Cl]`
