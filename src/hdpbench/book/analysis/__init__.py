"""Tables the book's sections are drawn from: stage results of several models gathered into DataFrames,
one module per section (``common``, ``data``, ``phonons``, ``sigma``, ``md``, ``kpca``); the notebooks
use them as ``analysis.NAME``.

Each function fills the results store first where needed (through the same stage functions as
``hdpbench run``) and then only reads it, so a second build reuses everything.
"""

import warnings

from tqdm import TqdmWarning

from hdpbench.book.analysis.common import (  # noqa: F401
    HALIDE_NAMES,
    MIN_COMPOUNDS_FOR_CORRELATION,
    MIN_COMPOUNDS_FOR_SCATTER,
    SMALL_N_FOR_CORRELATION,
    book_execution_times,
    book_settings,
    classes,
    dataset_compounds,
    dataset_label,
    fraction_text,
    prose,
    range_text,
    spearman,
    stage_results,
    supercell_atoms,
)
from hdpbench.book.analysis.data import (  # noqa: F401
    TABLE1_COLUMNS,
    demo_validation_table,
    extended_aimd_note,
    frame_set_files,
    generation_record,
    heldout_force_table,
    measured_call_costs,
    model_registry_table,
    readable_failure,
    sigma_db_agreement,
    sigma_db_check,
    sigma_db_note,
    sigma_db_sentence,
    table1,
)
from hdpbench.book.analysis.kpca import kpca_table  # noqa: F401
from hdpbench.book.analysis.md import (  # noqa: F401
    canonical_temperature_spread,
    halide_triangles,
    less_stable_by_halide,
    md_start_sentence,
    md_table,
    md_triangles,
    rank_correlations,
    temperature_table,
)
from hdpbench.book.analysis.phonons import (  # noqa: F401
    band_grid_sentence,
    band_table,
    correlation_sentence,
    fig1a_selection,
    halide_medians_sentence,
    halide_reference_table,
    lee_xia_metrics,
    lowest_median_model,
    mean_phonon_frequency,
    phonon_table,
    reference_band_arrays,
    selected_rows,
    sigma_rank_correlations,
)
from hdpbench.book.analysis.sigma import (  # noqa: F401
    SIGMA_APPROACHES,
    confusion,
    confusion_summary,
    confusion_table,
    per_species_sigma_table,
    published_fig3_summary,
    readable_triangles,
    sigma_confusion_panels,
    sigma_table,
    sigma_trace_table,
    trace_compounds,
    trace_summary,
    triangle_counts,
)

# The book's notebooks import this package; tqdm.auto asks for ipywidgets there, which the static book
# cannot show anyway.
warnings.filterwarnings("ignore", message="IProgress not found", category=TqdmWarning)
