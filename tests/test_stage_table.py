"""The stage table: every stage declared once, needs walked in order, keys that follow the needs' settings."""

from __future__ import annotations

import pytest

from hdpbench.core.errors import UsageError
from hdpbench.pipeline.cost import STAGE_COST, Rates, Workload, estimate
from hdpbench.pipeline.names import StageName
from hdpbench.pipeline.settings import RunSettings
from hdpbench.pipeline.stages import STAGES, get_stage, key_settings, plan


def test_every_stage_is_declared_once_with_its_cost():
    assert list(STAGES) == list(StageName)
    assert set(STAGE_COST) == set(STAGES)
    for name, stage in STAGES.items():
        assert stage.name == name and callable(stage.compute) and stage.summary
        assert all(need.stage in STAGES for need in stage.needs)


def test_plan_runs_needs_first_and_each_once():
    order = [(stage.name, settings) for stage, settings in plan("kpca")]
    names = [name for name, _ in order]
    assert names == ["phonons", "md", "sigma-md", "kpca"]
    # σ reads Φ_model at the σ displacement (0.02 Å): the phonons run for it is that one, not the bands'
    assert order[0][1].phonons.displacement == 0.02 and order[-1][1].phonons.displacement == 0.01
    assert [s.name for s, _ in plan("phonons")] == ["phonons"]
    assert [s.name for s, _ in plan("sigma-reference-frames")] == ["phonons", "sigma-reference-frames"]


def test_keys_follow_the_settings_of_the_needs():
    base = RunSettings()
    sigma_md = get_stage("sigma-md")
    assert set(key_settings(sigma_md, base)) == {"phonons", "md"}
    assert key_settings(sigma_md, base)["phonons"]["displacement"] == 0.02
    changed_md = base.with_overrides(["md.steps=10"])
    kpca = get_stage("kpca")
    assert key_settings(kpca, changed_md) != key_settings(kpca, base)
    assert key_settings(get_stage("phonons"), changed_md) == key_settings(get_stage("phonons"), base)
    # the bands' displacement does not touch σ's key; σ's displacement does
    sigma = get_stage("sigma-reference-frames")
    assert key_settings(sigma, base.with_overrides(["phonons.displacement=0.03"])) == key_settings(sigma, base)
    assert key_settings(sigma, base.with_overrides(["phonons.sigma_displacement=0.01"])) != key_settings(sigma, base)
    # σ's Φ_model comes without group velocities (no page compares its bands), whatever the bands' setting
    assert key_settings(sigma, base)["phonons"]["group_velocities"] is False
    assert key_settings(sigma, base.with_overrides(["phonons.group_velocities=false"])) == key_settings(sigma, base)


def test_unknown_stage_names_the_close_ones():
    with pytest.raises(UsageError, match="did you mean sigma-md"):
        get_stage("sigma_md")


def test_estimate_of_a_plan_covers_exactly_its_stages():
    rates = Rates(device="cpu", evaluate_frames_per_s=10.0, md_atom_steps_per_s=1000.0, sigma_frames_per_s=100.0, rematch_pairs_per_s=50.0)
    work = Workload(compounds=2, reference_frames_per_compound=10, md_steps_per_run=10)
    result = estimate(work, rates, [s.name for s, _ in plan("sigma-reference-frames")])
    assert list(result["seconds_per_stage"]) == ["phonons", "sigma-reference-frames"]
    assert result["seconds_per_stage"]["sigma-reference-frames"] == pytest.approx(2 * 10 / 10.0)
    assert set(estimate(work, rates)["seconds_per_stage"]) == {s.value for s in StageName}


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("md.steps=abc", "md.steps='abc': expected an integer"),
        ("phonons.supercell=3", "phonons.supercell=3: expected a list of 3 integers"),
        ("sigma.max_frames=1.5", "sigma.max_frames=1.5: expected an integer or null"),
        ("md.fix_com=1", "md.fix_com=1: expected true or false"),
        ("md.nosuch=1", "unknown setting md.nosuch"),
        ("nosuch.steps=1", "unknown settings group 'nosuch'"),
        ("md.steps", "expected GROUP.FIELD=VALUE"),
        ("md.steps=-1", "md setting steps=-1: expected an integer ≥ 0"),
    ],
)
def test_bad_settings_name_key_value_and_type(override, message):
    with pytest.raises(UsageError) as error:
        RunSettings().with_overrides([override])
    assert message in str(error.value)


def test_settings_values_are_typed():
    settings = RunSettings().with_overrides(["md.temperature_K=500", "phonons.supercell=[3, 3, 3]", "sigma.max_frames=null"])
    assert settings.md.temperature_K == 500.0 and isinstance(settings.md.temperature_K, float)
    assert settings.phonons.supercell == (3, 3, 3) and settings.sigma.max_frames is None
    assert settings.with_values({"md": {"steps": 7}}).md.steps == 7
