"""Build the book: jupytext sources → papermill-executed notebooks → Jupyter Book HTML.

``python -m hdpbench.book [--dataset demo] [--models "a b"] [--device cpu]`` is what ``make book``
runs. Papermill is the only executor (the book's own execution is off), so a failing cell stops the
build with its traceback; each notebook has a time budget.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from hdpbench.core import paths

# The four science sections, in the paper's order (each reads the stages the previous ones filled).
SECTION_NOTEBOOKS = ["phonons", "sigma", "model_md", "kpca_maps"]
# Beyond the paper: phonon fine-tuning of the demo models and of a small MACE trained on real KCl DFT
# (reads the committed fine-tuned checkpoints; `make demo-model` trains them).
FINETUNE_NOTEBOOK = "finetuning"
# The real-data chapter: any model against real DFT references (data/external), CHGNet by default.
REAL_DATA_NOTEBOOK = "real_test"
# The paper's harmonic-phonon question on real DFT: phonondb's 76 elpasolites and 30 ABX3 (a stated subset by default).
REAL_PHONONS_NOTEBOOK = "real_phonons"
# Order of execution; the table of contents lives in _toc.yml.
NOTEBOOKS = ["data_overview", *SECTION_NOTEBOOKS, FINETUNE_NOTEBOOK, REAL_DATA_NOTEBOOK, REAL_PHONONS_NOTEBOOK, "reproducibility"]
PAGE_TIMEOUT_S = 1200

# Stage sizes a dataset's book runs with (None or absent = the paper's settings). The demo's are cut
# so `make book` builds in minutes on 2 CPU cores; each page states the sizes it used.
BOOK_SIZES: dict[str, dict[str, int]] = {
    "demo": {"n_frames": 60, "md_steps": 300, "md_runs": 1, "kpca_frames": 60},
}


def generated_dir() -> Path:
    return paths.book_dir() / "_generated"


def use_project_matplotlib_config() -> None:
    """Give the kernels a matplotlib config and font cache of their own, under the project cache, unless
    ``MPLCONFIGDIR`` is set: the default ``~/.cache/matplotlib`` is shared by every environment of the
    user, and a font list written by another matplotlib (seen: one whose environment was being
    deleted) lacks fonts this one has, so a page printed "findfont" warnings. Left as it is when the
    cache folder cannot be created."""
    if "MPLCONFIGDIR" in os.environ:
        return
    folder = paths.cache_dir() / "matplotlib"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return
    os.environ["MPLCONFIGDIR"] = str(folder)


def execute_notebook(name: str, parameters: dict, *, timeout: int = PAGE_TIMEOUT_S, output_dir: Path | None = None) -> Path:
    """Execute ``notebooks/<name>.py`` with papermill; a failing cell raises with its traceback."""
    import jupytext
    import papermill

    use_project_matplotlib_config()

    source = paths.notebooks_dir() / f"{name}.py"
    output = Path(output_dir or generated_dir()) / f"{name}.ipynb"
    output.parent.mkdir(parents=True, exist_ok=True)
    unexecuted = output.with_suffix(".input.ipynb")
    jupytext.write(jupytext.read(source), unexecuted)
    from hdpbench.book.page import PAGE_DIR_VARIABLE

    previous = os.environ.get(PAGE_DIR_VARIABLE)
    os.environ[PAGE_DIR_VARIABLE] = str(output.parent)  # the kernel writes each figure's CSV beside the page
    try:
        papermill.execute_notebook(
            str(unexecuted),
            str(output),
            parameters=parameters,
            kernel_name="python3",
            execution_timeout=timeout,
            cwd=str(paths.project_root()),
            progress_bar=False,
        )
    finally:
        unexecuted.unlink(missing_ok=True)
        if previous is None:
            os.environ.pop(PAGE_DIR_VARIABLE, None)
        else:
            os.environ[PAGE_DIR_VARIABLE] = previous
    fold_code_cells(output)
    return output


def fold_code_cells(notebook_path: Path) -> None:
    """Readers see prose, figures and tables first: code stays one click away ("hide-input"), and the
    parameter cells, papermill's injected one included, fold away whole ("hide-cell")."""
    import nbformat

    notebook = nbformat.read(notebook_path, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        tags = cell.metadata.setdefault("tags", [])
        if {"parameters", "injected-parameters"} & set(tags):
            wanted = "hide-cell"
        elif "show-input" in tags:
            continue
        else:
            wanted = "hide-input"
        if wanted not in tags:
            tags.append(wanted)
    nbformat.write(notebook, notebook_path)


def declared_parameters(name: str) -> set[str]:
    """The names a notebook's ``parameters`` cell defines."""
    import jupytext

    notebook = jupytext.read(paths.notebooks_dir() / f"{name}.py")
    cells = [c for c in notebook.cells if "parameters" in c.metadata.get("tags", [])]
    if not cells:
        return set()
    import ast

    tree = ast.parse(cells[0].source)
    return {t.id for node in tree.body if isinstance(node, ast.Assign) for t in node.targets if isinstance(t, ast.Name)}


def execution_times_path() -> Path:
    """Seconds each page took to execute in the latest build (read by the reproducibility page)."""
    return generated_dir() / "execution_times.json"


def verdicts_path() -> Path:
    """The Markdown list of the paper's verdicts that ``book/intro.md`` includes."""
    return generated_dir() / "verdicts.md"


def write_verdicts() -> Path:
    """Write the paper's verdicts (``published.verdicts_markdown``: numbers formatted from the
    published constants) where the introduction's ``{include}`` reads them."""
    from hdpbench.core.storage import atomic_path
    from hdpbench.data.published import verdicts_markdown

    path = verdicts_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        Path(tmp).write_text(verdicts_markdown())
    return path


def build(parameters: dict, *, notebooks: list[str] | None = None) -> Path:
    import datetime
    import time

    from hdpbench.core.storage import atomic_write_json

    write_verdicts()  # before any page: a partial rebuild (--pages) renders the introduction too

    record = {
        "started_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "parameters": {k: v for k, v in parameters.items() if k != "results"},
        "pages": [],  # in execution order
    }
    if notebooks and execution_times_path().is_file():  # a partial rebuild keeps the other pages' times
        import json

        kept = json.loads(execution_times_path().read_text()).get("pages", [])
        record["pages"] = [entry for entry in kept if entry["page"] not in notebooks]
    for name in notebooks or NOTEBOOKS:
        own = {k: v for k, v in parameters.items() if k in declared_parameters(name)}
        print(f"executing notebooks/{name}.py with {own}", flush=True)
        start = time.perf_counter()
        execute_notebook(name, own)
        record["pages"].append({"page": name, "seconds": round(time.perf_counter() - start, 1)})
        atomic_write_json(execution_times_path(), record)
    root = paths.project_root()
    subprocess.run(
        [str(Path(sys.executable).parent / "jupyter-book"), "build", str(root), "--warningiserror", "--keep-going"],
        check=True,
        cwd=root,
    )
    html = root / "_build" / "html" / "index.html"
    print(f"book built: {html}")
    return html


def rerun_instructions(page: str) -> str:
    """Markdown for the end of a page: how to rebuild it with other parameters and open it as a notebook."""
    return f"""Rebuild this page with other parameters (the other pages keep their last version; any
parameter of the page's first code cell can be set, and results already computed are reused):

```bash
make book PAGES="{page}" BOOK_PARAMS="dtype=float64 n_frames=30"
```

Open it as a notebook (jupytext and JupyterLab come with `make install`):

```bash
.venv/bin/jupytext --to ipynb notebooks/{page}.py -o {page}.ipynb
.venv/bin/jupyter lab {page}.ipynb
```
"""


def default_models(dataset: str) -> list[str]:
    """The models a dataset's book shows unless told otherwise: the paper's four, or those of the
    demo's two whose checkpoints are here (a demo model still being trained is left out, with a
    notice; the data overview page lists it as not available)."""
    from hdpbench.data.published import PAPER_MODELS
    from hdpbench.demo.train import DEMO_MODELS
    from hdpbench.models.registry import get_model_spec, is_available

    if dataset != "demo":
        return list(PAPER_MODELS) if dataset == "hdp" else []
    present = [name for name in DEMO_MODELS if is_available(get_model_spec(name))]
    missing = [name for name in DEMO_MODELS if name not in present]
    if missing:
        print(f"demo models not trained yet, left out of the book: {', '.join(missing)} (make demo-model)", file=sys.stderr)
    return present


def _parameter_value(text: str):
    """A --param value as Python: None, True/False, an int, or the string itself."""
    literals = {"None": None, "True": True, "False": False}
    if text in literals:
        return literals[text]
    return int(text) if text.lstrip("-").isdigit() else text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", default="demo")
    parser.add_argument("--models", default="", help="space-separated model names (default: the dataset's models)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument(
        "--param", action="append", default=[], metavar="NAME=VALUE",
        help="a notebook parameter, e.g. md_steps=2000 (an integer, None, True/False or a string; repeatable; overrides the dataset's book sizes)",
    )
    parser.add_argument(
        "--pages", default="", metavar="'phonons sigma'",
        help=f"execute only these pages (of {', '.join(NOTEBOOKS)}); the others keep their last executed version",
    )
    args = parser.parse_args(argv)
    pages = args.pages.split()
    unknown = sorted(set(pages) - set(NOTEBOOKS))
    if unknown:
        parser.error(f"--pages: unknown page(s) {', '.join(unknown)}; the pages are {', '.join(NOTEBOOKS)}")
    models = args.models.split() or default_models(args.dataset)
    parameters = {"dataset": args.dataset, "models": models, "device": args.device, "dtype": args.dtype}
    if args.models.split():  # models named on the command line also take the real-data chapters
        parameters["real_models"] = models
        parameters["phonondb_models"] = models
    parameters.update(BOOK_SIZES.get(args.dataset, {}))
    for item in args.param:
        name, _, value = item.partition("=")
        if not name or not value:
            parser.error(f"--param {item!r}: expected NAME=VALUE")
        parameters[name] = _parameter_value(value)
    build(parameters, notebooks=pages or None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
