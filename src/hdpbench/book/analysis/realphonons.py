"""The paper's harmonic-phonon question (§3.1, Figs. 1, S2–S6, verdict 1) on real DFT: the Kyoto
phonon database's 76 elpasolites A2BB'X6 and 30 cubic ABX3 (dataset ``phonondb``, VASP PBEsol).

The elpasolites' reference Φ lives in the 40-atom conventional cell, so only the q-points commensurate
with it (Γ and X) are exact; the band path between them is a Fourier interpolation, on which even the
DFT bands show imaginary modes. Every stability class here is therefore the commensurate-point one
(``stable_*_commensurate``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import pandas as pd

from hdpbench.book.analysis.common import HALIDE_NAMES, spearman, stage_results, stage_rows
from hdpbench.core.compound import HALIDES
from hdpbench.pipeline.names import StageName

PHONONDB = "phonondb"
# halide order of the paper's trend (F → I): the rank the test correlates the errors with
HALIDE_RANK = {halide: k for k, halide in enumerate(HALIDES)}
STABLE, UNSTABLE = "stable", "unstable"
# p below which a rank test counts as settling the direction of a trend
SIGNIFICANCE = 0.05

# The stratified default subset: each halide's elpasolites split by the DFT (PBEsol Φ_ref) class at the
# commensurate q-points (no imaginary mode below −0.5 THz, Γ acoustic modes aside), each list in a
# seeded random order (numpy default_rng(0).permutation of the sorted names). Computed by
# ``reference_commensurate_classes`` (about 1 s per compound: it reads every archive), written here so
# that choosing the subset costs nothing; the page recomputes the class of every compound it shows and
# says if any differs.



def reference_commensurate_classes(dataset: str = PHONONDB, compounds: Sequence[str] | None = None, unstable_below: float = -0.5) -> pd.DataFrame:
    """One row per elpasolite (40-atom cell) or other compound: halide, atoms in the unit cell, the
    lowest DFT frequency at the supercell's commensurate q-points (Γ acoustic modes aside) and its class."""
    from hdpbench.core.structures import make_phonopy
    from hdpbench.data.datasets import get_dataset
    from hdpbench.physics.phonons import commensurate_frequencies, gamma_acoustic_free_minimum

    data = get_dataset(dataset, download=False)
    rows = []
    for name in compounds if compounds is not None else data.compounds():
        compound = data.load(name)
        phonon = make_phonopy(compound.unitcell, compound.supercell_matrix, compound.force_constants, primitive_matrix=compound.primitive_matrix)
        qpoints, frequencies = commensurate_frequencies(phonon)
        minimum = gamma_acoustic_free_minimum(frequencies, qpoints)
        rows.append({"compound": name, "halide": compound.halide, "unitcell_atoms": len(compound.unitcell),
                     "min_freq_reference_commensurate_thz": minimum, "class": STABLE if minimum >= unstable_below else UNSTABLE})  # fmt: skip
    return pd.DataFrame(rows)


def stratified_order(classes: pd.DataFrame, seed: int = 0) -> dict[str, dict[str, list[str]]]:
    """Halide → class → compounds in a seeded random order (how ``STRATIFIED_ORDER`` was made)."""
    order: dict[str, dict[str, list[str]]] = {}
    for (halide, klass), group in classes.groupby(["halide", "class"]):
        names = sorted(group["compound"])
        order.setdefault(halide, {})[klass] = [names[i] for i in np.random.default_rng(seed).permutation(len(names))]
    return order


def stratified_choice(n_per_halide: int, order: dict[str, dict[str, list[str]]] | None = None) -> list[str]:
    """``n_per_halide`` elpasolites of each halide, alternating DFT-stable and DFT-unstable ones (stable
    first) in the seeded order, all of a halide where it has fewer."""
    order = order or STRATIFIED_ORDER
    chosen = []
    for halide in HALIDES:
        lists = [list(order.get(halide, {}).get(STABLE, [])), list(order.get(halide, {}).get(UNSTABLE, []))]
        picked, turn = [], 0
        while len(picked) < n_per_halide and any(lists):
            if lists[turn % 2]:
                picked.append(lists[turn % 2].pop(0))
            turn += 1
        chosen += picked
    return chosen


def elpasolites() -> list[str]:
    """Every elpasolite of the seeded order (all 76), halide by halide."""
    return [name for halide in HALIDES for klass in (STABLE, UNSTABLE) for name in STRATIFIED_ORDER.get(halide, {}).get(klass, [])]


def phonon_rows(models: Sequence[str], compounds: Sequence[str], **kwargs) -> pd.DataFrame:
    """One row per (model, compound) of the phonon stage on phonondb, computed where missing, with
    the DFT and model classes at the commensurate q-points as words."""
    rows = []
    for model in models:
        rows += stage_rows(stage_results(StageName.PHONONS, PHONONDB, model, compounds=list(compounds), **kwargs), model, compounds)
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    table = table.drop(columns=[c for c in ("thermal_reference", "thermal_model") if c in table])
    for owner in ("reference", "model"):
        table[f"class_{owner}"] = np.where(table[f"stable_{owner}_commensurate"].astype(bool), STABLE, UNSTABLE)
    return table


def halide_counts_text(table: pd.DataFrame) -> str:
    """"10 F, 4 Cl, 2 Br" (compounds per halide, in the halide order; no model counted twice)."""
    counts = table.drop_duplicates("compound").groupby("halide").size()
    return ", ".join(f"{int(counts[h])} {h}" for h in HALIDES if h in counts)


def halide_trend_tests(table: pd.DataFrame, column: str = "rmse_omega2_thz2") -> pd.DataFrame:
    """Per model: n per halide, the median of ``column`` per halide, Spearman ρ of ``column`` against the
    halide's place in F → Cl → Br → I (ρ < 0: errors fall towards the heavy halides) with its p
    (exact below 10 compounds), and the Kruskal–Wallis p across the halides present."""
    from scipy.stats import kruskal

    rows = []
    for model, group in table.groupby("model", sort=False):
        group = group.dropna(subset=[column])
        halides = [h for h in HALIDES if h in set(group["halide"])]
        rho, p = spearman(group["halide"].map(HALIDE_RANK), group[column])
        samples = [group.loc[group["halide"] == h, column].to_numpy() for h in halides]
        kw = float(kruskal(*samples).pvalue) if len(samples) >= 2 and all(len(s) for s in samples) and np.ptp(group[column]) > 0 else float("nan")
        row = {"model": model, "n": int(len(group))}
        for h in halides:
            row[f"n {h}"] = int(len(group[group["halide"] == h]))
            row[f"median {h}"] = float(group.loc[group["halide"] == h, column].median())
        rows.append(row | {"rho": rho, "p": p, "p_kruskal": kw})
    return pd.DataFrame(rows)


def trend_verdict(rho: float, p: float) -> str:
    """"reproduced" (errors fall from light to heavy halides, p < SIGNIFICANCE), "contradicted" (they
    rise, p < SIGNIFICANCE) or "not settled" (no significant rank correlation at this n)."""
    if np.isnan(rho) or np.isnan(p) or p >= SIGNIFICANCE:
        return "not settled"
    return "reproduced" if rho < 0 else "contradicted"


def _signed(value: float, digits: int = 2) -> str:
    """A number for prose with a typographic minus."""
    return f"{value:.{digits}f}".replace("-", "\u2212")


def trend_sentence(tests: pd.DataFrame, table: pd.DataFrame, label=lambda m: m) -> str:
    """Verdict 1's first half, one clause per model, from the rank tests; what the halides present allow."""
    present = [h for h in HALIDES if h in set(table["halide"])]
    missing = [HALIDE_NAMES[h] for h in HALIDES if h not in present]
    counts = table.drop_duplicates("compound").groupby("halide").size()
    clauses = []
    for _, row in tests.iterrows():
        verdict = trend_verdict(row["rho"], row["p"])
        direction = "fall" if row["rho"] < 0 else "rise"
        clauses.append(
            f"{label(row['model'])}: **{verdict}** (the errors' ranks {direction} from {HALIDE_NAMES[present[0]]} to "
            f"{HALIDE_NAMES[present[-1]]}: Spearman ρ = {_signed(row['rho'])}, p = {row['p']:.2g}, n = {int(row['n'])})"
            if not np.isnan(row["rho"]) else f"{label(row['model'])}: **not testable** (ρ undefined, n = {int(row['n'])})"
        )
    text = "; ".join(clauses) + "."
    if missing:
        text += f" No {' or '.join(missing)} are in this database, so the trend can only be tested from {HALIDE_NAMES[present[0]]} to {HALIDE_NAMES[present[-1]]}."
    small = [f"{h} (n = {int(counts[h])})" for h in present if counts[h] < 5]
    if small:
        text += (f" Few compounds in {', '.join(small)}: such a group shifts ρ but cannot carry a trend on its own (the database"
                 " has only two bromide elpasolites, so the bromide end of the order always rests on two points); the"
                 " Kruskal–Wallis p in the table asks only whether the halides differ at all.")
    return text


def model_ranking(table: pd.DataFrame) -> pd.DataFrame:
    """Models by median RMSE(ω²) over the compounds every model has, with their training data and size."""
    from hdpbench.models.registry import get_model_spec

    shared = set.intersection(*(set(g["compound"]) for _, g in table.groupby("model")))
    common = table[table["compound"].isin(shared)]
    rows = []
    for model, group in common.groupby("model", sort=False):
        spec = get_model_spec(model)
        rows.append({
            "model": model, "compounds": int(len(group)), "median RMSE(ω²) (THz²)": float(group["rmse_omega2_thz2"].median()),
            "median RMSE(v_g) (THz·Å)": float(group["rmse_vg_thz_ang"].median()),
            "median RMSE(ω²) at Γ and X (THz²)": float(group["rmse_omega2_commensurate_thz2"].median()),
            "training data": spec.training_data or "not stated", "level of theory": spec.level_of_theory or "not stated",
            "parameters": f"{spec.parameters:,}" if spec.parameters else "not stated",
        })  # fmt: skip
    return pd.DataFrame(rows).sort_values("median RMSE(ω²) (THz²)", kind="stable").reset_index(drop=True)


def data_size_sentence(ranking: pd.DataFrame, label=lambda m: m) -> str:
    """Verdict 1's second half: the most accurate model, and whether the training sets differ in size."""
    best = ranking.iloc[0]
    text = f"The most accurate model here is {label(best['model'])} (median RMSE(ω²) {best['median RMSE(ω²) (THz²)']:.3g} THz² over {int(best['compounds'])} compounds)"
    if len(ranking) > 1:
        text += f", then {', '.join(label(m) for m in ranking['model'].iloc[1:])}"
    sizes = {re.sub(r"[^0-9.]", "", m.group(0)) for m in (re.search(r"[\d.]+\s*M structures", t) for t in ranking["training data"]) if m}
    if len(ranking) > 1 and all("MPtrj" in t for t in ranking["training data"]) and len(sizes) <= 1:
        text += (". Every model here learned the same MPtrj set, so \"the model trained on the most data is the most accurate\" "
                 "cannot be tested with them: what separates them is the architecture, its size (parameters in the table) and the training run.")
    elif len(ranking) > 1:
        text += ". Their training sets differ (table): compare the order of the rows with the training data."
    else:
        text += "; with one model there is nothing to rank (name more in `phonondb_models`)."
    return text


def class_confusion(table: pd.DataFrame, model: str, halide: str | None = None) -> np.ndarray:
    """2 x 2 counts, rows DFT class (stable, unstable), columns the model's, at the commensurate q-points."""
    rows = table[(table["model"] == model) & ((table["halide"] == halide) if halide else True)]
    order = [STABLE, UNSTABLE]
    counts = np.zeros((2, 2), dtype=int)
    for ref, mod in zip(rows["class_reference"], rows["class_model"], strict=True):
        counts[order.index(ref), order.index(mod)] += 1
    return counts


def class_agreement_table(table: pd.DataFrame) -> pd.DataFrame:
    """Per model and halide: n, DFT-unstable count, the four confusion counts and the agreement."""
    rows = []
    for model in table["model"].unique():
        for halide in [h for h in HALIDES if h in set(table["halide"])]:
            counts = class_confusion(table, model, halide)
            n = int(counts.sum())
            rows.append({"model": model, "halide": halide, "n": n, "DFT stable, model stable": int(counts[0, 0]),
                         "DFT stable, model unstable": int(counts[0, 1]), "DFT unstable, model stable": int(counts[1, 0]),
                         "DFT unstable, model unstable": int(counts[1, 1]), "agreement": (counts[0, 0] + counts[1, 1]) / n if n else float("nan")})  # fmt: skip
    return pd.DataFrame(rows)


def summary_table(table: pd.DataFrame, cubic: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per model: compounds, median RMSE(ω²) per halide, Spearman ρ and p over the halide order,
    and the class agreement at the commensurate q-points on the elpasolites (and the ABX3, where given)."""
    tests = halide_trend_tests(table).set_index("model")
    rows = []
    for model, group in table.groupby("model", sort=False):
        row = {"model": model, "elpasolites": int(len(group))}
        for halide in [h for h in HALIDES if h in set(group["halide"])]:
            row[f"median RMSE(ω²) {halide} (THz²)"] = float(group.loc[group["halide"] == halide, "rmse_omega2_thz2"].median())
        row |= {"ρ (halide order)": tests.loc[model, "rho"], "p (ρ)": tests.loc[model, "p"],
                "verdict: errors fall F → Br": trend_verdict(tests.loc[model, "rho"], tests.loc[model, "p"]),
                "class agreement (elpasolites)": float((group["class_reference"] == group["class_model"]).mean())}  # fmt: skip
        if cubic is not None and len(cubic):
            rows_cubic = cubic[cubic["model"] == model]
            row["class agreement (ABX3)"] = float((rows_cubic["class_reference"] == rows_cubic["class_model"]).mean()) if len(rows_cubic) else float("nan")
        rows.append(row)
    return pd.DataFrame(rows)


def median_compound(table: pd.DataFrame, model: str, column: str = "rmse_omega2_thz2") -> str:
    """The compound whose ``column`` is the median one of ``model``'s (the lower middle for an even n)."""
    rows = table[table["model"] == model].sort_values(column, kind="stable")
    return str(rows["compound"].iloc[(len(rows) - 1) // 2])


def _stratified_literal() -> dict[str, dict[str, list[str]]]:
    return {
        "F": {
            STABLE: [
                "Cs2NaBiF6", "Rb2NaRhF6", "Cs2NaInF6", "Cs2KGaF6", "LiTl2InF6", "Rb2NaAsF6", "Cs2KRhF6",
                "K2NaAlF6", "K2LiAlF6", "Cs2NaYF6", "Cs2KAgF6", "LiTl2GaF6", "Cs2NaScF6", "Cs2NaErF6", "Rb2NaInF6",
                "Rb2NaGaF6", "NaTl2GaF6", "Cs2TlGaF6", "Cs2KCuF6", "NaTl2RhF6",
            ],
            UNSTABLE: [
                "Cs2KNF6", "Cs2RbYF6", "Rb2InGaF6", "KRb2ScF6", "K2NaYF6", "Cs2KYF6", "Tl2InGaF6", "Rb2TlInF6",
                "Rb2NaBiF6", "Cs2RbTlF6", "K2NaTlF6", "Cs2NaNF6", "KRb2BiF6", "Rb2NaHoF6", "Cs2KTlF6", "Cs2KBiF6",
                "Cs2RbInF6", "K2NaRhF6", "KRb2GaF6", "Cs2TlBiF6", "Rb2NaErF6", "Cs2TlInF6", "Cs2RbGaF6",
                "Cs2LiNF6", "K2NaScF6", "CsRb2GaF6", "Rb2NaSbF6", "KRb2RhF6", "Cs2RbNF6", "Rb2NaTlF6", "Na2LiNF6",
                "Cs2KInF6", "K2NaInF6", "Rb2NaYF6",
            ],
        },
        "Cl": {
            STABLE: [
                "Cs2NaAsCl6", "Cs2NaHoCl6", "Cs2NaErCl6", "Cs2NaYCl6", "Cs2NaInCl6", "Cs2LiLuCl6", "Cs2LiYCl6",
            ],
            UNSTABLE: [
                "Rb2TlInCl6", "Cs2NaSmCl6", "Rb2NaInCl6", "Rb2LiInCl6", "Rb2LiTlCl6", "TbCs2NaCl6", "Cs2CaSnCl6",
                "KRb2InCl6", "Rb2NaBiCl6", "Rb2NaTmCl6", "TbCs2KCl6", "Rb2NaSbCl6", "Cs2KScCl6",
            ],
        },
        "Br": {
            STABLE: [
                "Cs2LiInBr6",
            ],
            UNSTABLE: [
                "Rb2LiDyBr6",
            ],
        },
    }


def _abx3_literal() -> dict[str, dict[str, list[str]]]:
    return {
        "F": {
            STABLE: [
                "KMgF3", "RbCaF3", "CsCdF3", "RbMgF3", "CsHgF3", "KZnF3", "YbRbF3", "BaLiF3", "YbCsF3", "CsCaF3",
            ],
            UNSTABLE: [
                "KHgF3", "RbCdF3", "KCaF3", "RbHgF3", "KCdF3", "NaMgF3", "ZnAgF3", "CsPbF3", "RbPbF3", "CsSrF3",
            ],
        },
        "Cl": {
            STABLE: [
                "CsCdCl3",
            ],
            UNSTABLE: [
                "CsPbCl3",
            ],
        },
        "Br": {
            STABLE: [
                "CsGeBr3", "CsCaBr3", "CsCdBr3", "YbCsBr3",
            ],
            UNSTABLE: [
                "CsPbBr3", "CsSnBr3",
            ],
        },
        "I": {
            STABLE: [
                "CsSnI3", "RbGeI3",
            ],
            UNSTABLE: [
            ],
        },
    }


STRATIFIED_ORDER = _stratified_literal()
# the 30 cubic ABX3 (5-atom cell, 135-atom supercell) in the same way, by their own halide
ABX3_ORDER = _abx3_literal()


def list_parameter(value):
    """A list page parameter: a list as is, or from BOOK_PARAMS one name or a comma- or space-separated list."""
    return [n for n in re.split(r"[,\s]+", value) if n] if isinstance(value, str) else value


def page_selection(models, all_models, n_per_halide, compounds, abx3_compounds):
    """(models, elpasolites, ABX3, full run) the page computes from its parameters: an explicit compound
    list, all 76 + 30 with every model (``n_per_halide`` None), or the stratified default subset."""
    models, all_models = list_parameter(models), list_parameter(all_models)
    compounds, abx3_compounds = list_parameter(compounds), list_parameter(abx3_compounds)
    full_run = n_per_halide is None and compounds is None
    chosen_models = list(dict.fromkeys(models + (all_models if full_run else [])))
    if compounds is not None:
        elpasolites_chosen = list(compounds)
    elif full_run:
        elpasolites_chosen = elpasolites()
    else:
        elpasolites_chosen = stratified_choice(int(n_per_halide))
    if abx3_compounds is None or full_run:
        abx3 = [n for halide in HALIDE_RANK for klass in (STABLE, UNSTABLE) for n in ABX3_ORDER.get(halide, {}).get(klass, [])]
    else:
        abx3 = list(abx3_compounds)
    return chosen_models, elpasolites_chosen, abx3, full_run
