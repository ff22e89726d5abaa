"""Execute the project's notebooks headless (`make notebook`; needs the `analysis` extra).

`run_notebook` runs every cell of a notebook with nbclient in a fresh Python kernel, from a given
working folder (the project root: the notebooks read ``data/...``), and writes the executed copy.
A failing cell raises nbclient's ``CellExecutionError`` naming the cell and the error.

Example (from the project root, after `make run`)::

    python -m segad.notebooks notebooks/query_features.ipynb --out data/08_reporting/notebooks
"""

from __future__ import annotations

import argparse
from pathlib import Path


def run_notebook(notebook: str | Path, cwd: str | Path, out: str | Path | None = None, timeout: int = 600) -> Path:
    """Execute `notebook` with `cwd` as working folder; the executed copy goes to `out` (a folder;
    default: beside `notebook`, named ``<stem>.executed.ipynb``). Returns the copy's path."""
    try:
        import nbformat
        from nbclient import NotebookClient
    except ModuleNotFoundError as error:
        raise ModuleNotFoundError(
            f"running notebooks needs {error.name}: pip install -e '.[analysis]' (or `make notebook`)"
        ) from error
    notebook = Path(notebook)
    if not notebook.is_file():
        raise FileNotFoundError(f"{notebook}: no such notebook")
    document = nbformat.read(notebook, as_version=4)
    client = NotebookClient(
        document, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(Path(cwd))}}
    )
    client.execute()
    folder = Path(out) if out is not None else notebook.parent
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{notebook.stem}.executed.ipynb"
    nbformat.write(document, target)
    return target


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="+", type=Path)
    parser.add_argument("--cwd", type=Path, default=Path.cwd(), help="working folder of the kernel (project root)")
    parser.add_argument("--out", type=Path, default=None, help="folder of the executed copies")
    parser.add_argument("--timeout", type=int, default=600, help="seconds per cell")
    args = parser.parse_args(argv)
    for notebook in args.notebooks:
        print(f"{notebook}: executed, copy at {run_notebook(notebook, args.cwd, args.out, args.timeout)}")


if __name__ == "__main__":
    main()
