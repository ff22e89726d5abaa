"""Dataset readers: one function per folder layout, each returning the image index.

The image index has one row per image (schema in docs/schemas.md, `segad.ingestion.image_index.INDEX_COLUMNS`).
Image ids are the image's path relative to the dataset root with POSIX separators, so they are
stable across runs and machines.

Layouts (see docs/datasets.md):
- `vad`: train/{good,bad}, test/{good,bad,bad_unseen_defects}, optional low_shot_train.json.
- `demo`: the VAD layout written by `segad.ingestion.demo`, plus `defects.csv` naming each bad image's type.
- `visa`: raw release (`split_csv/1cls.csv`) or the prepared MVTec-style form.
- `sensum`: SensumSODF `{capsule,softgel}/{negative,positive}/data`, masks in positive/annotation.
- `mvtec`: `<cat>/train/good`, `<cat>/test/<defect_type>`, `<cat>/ground_truth/<defect_type>/<stem>_mask.png`.
- `elpv`: the ELPV solar cells shipped in the `elpv-dataset` package (labels.csv + images/).

Example:
    >>> from segad.ingestion.layouts import build_index
    >>> index, problems = build_index("vad", "/data/vad")  # doctest: +SKIP
    >>> index.groupby(["split", "label"]).size()  # doctest: +SKIP
"""

from __future__ import annotations

import csv
import json
import pickle
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from segad.ingestion.image_index import DuplicateImageError, check_duplicates, measure_images, typed_index
from segad.storage.images import ImageReadError, is_image_file
from segad.vocabulary import LAYOUTS

VISA_CATEGORIES = (
    "candle",
    "capsules",
    "cashew",
    "chewinggum",
    "fryum",
    "macaroni1",
    "macaroni2",
    "pcb1",
    "pcb2",
    "pcb3",
    "pcb4",
    "pipe_fryum",
)
SENSUM_CATEGORIES = ("capsule", "softgel")


class LayoutError(ValueError):
    """The folder does not hold the expected layout; the message says what was expected."""


def build_index(
    layout: str,
    root: str | Path | None,
    category: str | list[str] | None = None,
    on_bad_image: str = "fail",
    **options,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Read a dataset folder into (image_index, problems).

    Every image and mask is decoded once (which also gives width and height); unreadable or
    truncated files are listed in `problems` (columns path, problem). With on_bad_image="fail"
    any problem raises `ImageReadError` listing all of them; with "skip" the images are dropped
    and the caller reports `problems`.
    """
    if layout not in READERS:
        raise LayoutError(f"unknown dataset.layout {layout!r}; expected one of {', '.join(LAYOUTS)}")
    if on_bad_image not in ("fail", "skip"):
        raise ValueError(f"dataset.on_bad_image must be 'fail' or 'skip', got {on_bad_image!r}")
    root_path = _elpv_root(root) if layout == "elpv" else _existing_root(root)
    rows = READERS[layout](root_path, _categories(category), **options)
    if not rows:
        raise LayoutError(f"{root_path}: no images found for layout {layout!r}")
    index = pd.DataFrame(rows)
    index.insert(1, "dataset", layout)
    try:
        check_duplicates(index)
    except DuplicateImageError as error:
        raise LayoutError(f"{root_path}: {error}") from None
    index, problems = measure_images(index)
    if len(problems) and on_bad_image == "fail":
        listing = "\n".join(f"  {p.path}: {p.problem}" for p in problems.itertuples())
        raise ImageReadError(
            f"{len(problems)} unreadable image or mask file(s) under {root_path} "
            f"(set dataset.on_bad_image: skip to drop and report them):\n{listing}"
        )
    return typed_index(index), problems


# ---------------------------------------------------------------------------------------------
# Layout readers: (root, categories, **options) -> list of row dicts without dataset/width/height


def read_vad(root: Path, categories: list[str] | None = None, category_name: str = "vad") -> list[dict]:
    """VAD: train/good, train/bad, test/good, test/bad, test/bad_unseen_defects (unseen)."""
    folders = {
        ("train", "good"): 0,
        ("train", "bad"): 1,
        ("test", "good"): 0,
        ("test", "bad"): 1,
        ("test", "bad_unseen_defects"): 1,
    }
    required = [root / "train" / "good", root / "test" / "good"]
    if not all(p.is_dir() for p in required):
        raise LayoutError(
            f"{root}: not a VAD-style folder: expected train/good and test/good (train/bad, test/bad and "
            f"test/bad_unseen_defects are read when present); found {_listing(root)}"
        )
    rows = []
    for (split, folder), label in folders.items():
        for path in _images(root / split / folder):
            rows.append(
                _row(
                    root,
                    path,
                    category_name,
                    split,
                    label,
                    "good" if label == 0 else folder,
                    folder == "bad_unseen_defects",
                )
            )
    _check_low_shot(root)
    return rows


def read_demo(root: Path, categories: list[str] | None = None) -> list[dict]:
    """The demo: VAD layout plus `defects.csv` (image_id, defect_type) written by segad.ingestion.demo."""
    rows = read_vad(root, categories, category_name="demo")
    types_file = root / "defects.csv"
    if types_file.is_file():
        types = dict(pd.read_csv(types_file).itertuples(index=False, name=None))
        for row in rows:
            row["defect_type"] = types.get(row["image_id"], row["defect_type"])
    return rows


def read_low_shot(root: str | Path) -> dict[str, list[str]]:
    """VAD's low_shot_train.json: {draw key: [file names in train/bad]}; {} when absent."""
    path = Path(root) / "low_shot_train.json"
    if not path.is_file():
        return {}
    try:
        draws = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise LayoutError(f"{path}: not valid JSON ({error})") from error
    if not isinstance(draws, dict) or not all(isinstance(v, list) for v in draws.values()):
        raise LayoutError(f"{path}: expected {{key: [file names in train/bad]}}")
    return {str(k): [str(Path(name).name) for name in v] for k, v in draws.items()}


def read_visa(root: Path, categories: list[str] | None = None) -> list[dict]:
    """VisA: the raw release with split_csv/1cls.csv, or the prepared MVTec-style form."""
    csv_path = root / "split_csv" / "1cls.csv"
    if csv_path.is_file():
        return _read_visa_raw(root, csv_path, categories)
    present = [c for c in VISA_CATEGORIES if (root / c / "train" / "good").is_dir()]
    if not present:
        raise LayoutError(
            f"{root}: not a VisA folder: expected split_csv/1cls.csv (raw release) or "
            f"<category>/train/good (prepared form) for categories {', '.join(VISA_CATEGORIES)}; "
            f"found {_listing(root)}"
        )
    rows = []
    for cat in _select(present, categories, root):
        rows += _read_mvtec_category(root, root / cat, cat, mask_suffix="")
    return rows


def _read_visa_raw(root: Path, csv_path: Path, categories: list[str] | None) -> list[dict]:
    with csv_path.open(newline="") as handle:
        records = list(csv.DictReader(handle))
    expected = {"object", "split", "label", "image", "mask"}
    if not records or not expected <= set(records[0]):
        raise LayoutError(f"{csv_path}: expected header object,split,label,image,mask")
    wanted = _select(sorted({r["object"] for r in records}), categories, root)
    rows = []
    for record in records:
        if record["object"] not in wanted:
            continue
        if record["label"] not in ("normal", "anomaly") or record["split"] not in ("train", "test"):
            raise LayoutError(f"{csv_path}: bad row {record} (label normal|anomaly, split train|test)")
        label = int(record["label"] == "anomaly")
        mask = root / record["mask"] if record.get("mask") else None
        if mask is not None and not mask.is_file():
            raise LayoutError(f"{csv_path}: mask {mask} of {record['image']} does not exist")
        rows.append(
            _row(
                root,
                root / record["image"],
                record["object"],
                record["split"],
                label,
                "bad" if label else "good",
                False,
                mask,
            )
        )
    return rows


def read_sensum(root: Path, categories: list[str] | None = None) -> list[dict]:
    """SensumSODF: <cat>/negative/data (good), <cat>/positive/data (bad), positive/annotation masks.

    The dataset has no predefined split: every image gets split="train" and the `kfold` regime
    draws the folds (or reads the official fold files, see `read_sensum_folds`).
    """
    present = [c for c in SENSUM_CATEGORIES if (root / c / "negative" / "data").is_dir()]
    if not present:
        raise LayoutError(
            f"{root}: not a SensumSODF folder: expected capsule/ and/or softgel/ with "
            f"negative/data and positive/data; found {_listing(root)}"
        )
    rows = []
    for cat in _select(present, categories, root):
        base = root / cat
        goods = _images(base / "negative" / "data")
        bads = _images(base / "positive" / "data")
        masks = {p.stem: p for p in _images(base / "positive" / "annotation")}
        orphans = sorted(set(masks) - {p.stem for p in bads})
        if orphans:
            raise LayoutError(f"{base / 'positive' / 'annotation'}: masks without images: {orphans[:10]}")
        rows += [_row(root, p, cat, "train", 0, "good", False) for p in goods]
        rows += [_row(root, p, cat, "train", 1, "bad", False, masks.get(p.stem)) for p in bads]
    return rows


class _ListsOnly(pickle.Unpickler):
    """Unpickler for the official SensumSODF fold files: plain lists/tuples of ids and bools only."""

    def find_class(self, module: str, name: str):  # noqa: D401 - pickle API
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: fold files hold plain lists")


def read_sensum_folds(splits_root: str | Path, category: str) -> dict[int, dict[str, set[str]]]:
    """Official SensumSODF folds: {fold: {"train"|"test": set of image stems}}; {} when absent.

    Files: `<splits_root>/<category>/<fold>/<train|test>/{neg,pos*}.pckl`, each a pickled list of
    (id, is_segmented). Loaded with an unpickler that admits only plain Python values.
    """
    base = Path(splits_root) / category
    if not base.is_dir():
        return {}
    folds: dict[int, dict[str, set[str]]] = {}
    for fold_dir in sorted(p for p in base.iterdir() if p.is_dir()):
        try:
            fold = int(fold_dir.name)
        except ValueError:
            raise LayoutError(f"{fold_dir}: fold folders must be named by their number") from None
        folds[fold] = {}
        for part in ("train", "test"):
            ids: set[str] = set()
            for pckl in sorted((fold_dir / part).glob("*.pckl")):
                try:
                    with pckl.open("rb") as handle:
                        entries = _ListsOnly(handle).load()
                except (pickle.UnpicklingError, EOFError, ValueError) as error:
                    raise LayoutError(f"{pckl}: not a fold file ({error})") from error
                ids |= {Path(str(e[0] if isinstance(e, (list, tuple)) else e)).stem for e in entries}
            folds[fold][part] = ids
    return folds


def read_mvtec(root: Path, categories: list[str] | None = None) -> list[dict]:
    """MVTec-AD style: <cat>/train/good, <cat>/test/<defect_type>, ground_truth/<type>/<stem>_mask.png.

    `root` may be one category folder (it has train/ and test/) or a folder of categories.
    """
    if (root / "train" / "good").is_dir():
        return _read_mvtec_category(root, root, root.name)
    present = sorted(p.name for p in root.iterdir() if (p / "train" / "good").is_dir())
    if not present:
        raise LayoutError(
            f"{root}: not an MVTec-style folder: expected train/good and test/<defect_type> "
            f"(in root or in category subfolders); found {_listing(root)}"
        )
    rows = []
    for cat in _select(present, categories, root):
        rows += _read_mvtec_category(root, root / cat, cat)
    return rows


def _read_mvtec_category(root: Path, base: Path, category: str, mask_suffix: str = "_mask") -> list[dict]:
    if not (base / "test").is_dir():
        raise LayoutError(f"{base}: expected a test/ folder beside train/")
    rows = [_row(root, p, category, "train", 0, "good", False) for p in _images(base / "train" / "good")]
    image_stems: dict[str, set[str]] = {}
    for defect_dir in sorted(p for p in (base / "test").iterdir() if p.is_dir()):
        defect = defect_dir.name
        images = _images(defect_dir)
        image_stems[defect] = {p.stem for p in images}
        for path in images:
            mask = base / "ground_truth" / defect / f"{path.stem}{mask_suffix}.png"
            rows.append(
                _row(
                    root, path, category, "test", int(defect != "good"), defect, False, mask if mask.is_file() else None
                )
            )
    truth = base / "ground_truth"
    if truth.is_dir():
        for defect_dir in sorted(p for p in truth.iterdir() if p.is_dir()):
            stems = {p.stem.removesuffix(mask_suffix) if mask_suffix else p.stem for p in _images(defect_dir)}
            orphans = sorted(stems - image_stems.get(defect_dir.name, set()))
            if orphans:
                raise LayoutError(f"{defect_dir}: masks without images in test/{defect_dir.name}: {orphans[:10]}")
    return rows


def read_elpv(
    root: Path,
    categories: list[str] | None = None,
    include_uncertain: bool = False,
    test_share: float = 0.25,
    split_seed: int = 0,
) -> list[dict]:
    """ELPV solar cells: labels.csv rows `images/cellNNNN.png  probability  type`.

    Good = probability 0, bad = probability 1; the uncertain 1/3 and 2/3 cells are left out unless
    include_uncertain (then probability >= 0.5 is bad). Category = cell type (mono, poly). No fixed
    split: a seeded split stratified by (category, label) puts test_share of each group in test.
    """
    labels = root / "labels.csv"
    table = pd.read_csv(labels, sep=r"\s+", header=None, names=["file", "probability", "type"])
    if not include_uncertain:
        table = table[table.probability.isin([0.0, 1.0])]
    table = table[table["type"].isin(_select(sorted(table["type"].unique()), categories, root))]
    rng = np.random.default_rng(split_seed)
    split = pd.Series("train", index=table.index)
    for _, group in table.groupby([table["type"], table.probability >= 0.5]):
        n_test = int(round(test_share * len(group)))
        split[rng.permutation(group.index.to_numpy())[:n_test]] = "test"
    return [
        _row(
            root,
            root / r.file,
            r.type,
            split[i],
            int(r.probability >= 0.5),
            "good" if r.probability < 0.5 else f"defect_p{r.probability:.2f}",
            False,
        )
        for i, r in zip(table.index, table.itertuples())
    ]


READERS: dict[str, Callable[..., list[dict]]] = {
    "demo": read_demo,
    "vad": read_vad,
    "visa": read_visa,
    "sensum": read_sensum,
    "mvtec": read_mvtec,
    "elpv": read_elpv,
}


# ---------------------------------------------------------------------------------------------
# Helpers


def _row(
    root: Path,
    path: Path,
    category: str,
    split: str,
    label: int,
    defect_type: str,
    unseen: bool,
    mask: Path | None = None,
) -> dict:
    return {
        "image_id": path.relative_to(root).as_posix(),
        "category": category,
        "split": split,
        "label": label,
        "defect_type": defect_type,
        "unseen": unseen,
        "path": str(path.resolve()),
        "mask_path": str(mask.resolve()) if mask else None,
    }


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if is_image_file(p)) if folder.is_dir() else []


def _existing_root(root: str | Path | None) -> Path:
    if root is None or str(root) == "":
        raise LayoutError("dataset.root is not set")
    path = Path(root)
    if not path.is_dir():
        raise LayoutError(f"dataset.root {path} does not exist or is not a folder")
    return path.resolve()


def _elpv_root(root: str | Path | None) -> Path:
    """dataset.root (a folder holding labels.csv), or with root None the installed elpv-dataset's data."""
    if root:
        if not (Path(root) / "labels.csv").is_file():
            raise LayoutError(
                f"dataset.root {root}: no labels.csv, so it is not an ELPV folder. Give a folder holding "
                "labels.csv and images/, or dataset.root=null for the copy in the elpv-dataset package "
                "(as `--env elpv` does)"
            )
        return Path(root).resolve()
    try:
        import elpv_dataset
    except ImportError as error:  # pragma: no cover - a project dependency
        raise LayoutError("layout 'elpv' needs the package elpv-dataset (pip install elpv-dataset)") from error
    data = Path(elpv_dataset.__file__).parent / "data"
    if not (data / "labels.csv").is_file():
        raise LayoutError(f"{data}: the elpv-dataset package has no labels.csv")
    return data


def _categories(category: str | list[str] | None) -> list[str] | None:
    if category is None or category == "":
        return None
    return [category] if isinstance(category, str) else [str(c) for c in category]


def _select(present: Iterable[str], wanted: list[str] | None, root: Path) -> list[str]:
    present = list(present)
    if wanted is None:
        return present
    missing = sorted(set(wanted) - set(present))
    if missing:
        raise LayoutError(f"{root}: categories {missing} not found; present: {present}")
    return [c for c in present if c in wanted]


def _listing(root: Path) -> str:
    names = sorted(p.name + ("/" if p.is_dir() else "") for p in root.iterdir())[:12]
    return ", ".join(names) if names else "an empty folder"


def _check_low_shot(root: Path) -> None:
    draws = read_low_shot(root)
    present = {p.name for p in _images(root / "train" / "bad")}
    for key, names in draws.items():
        missing = sorted(set(names) - present)
        if missing:
            raise LayoutError(
                f"{root / 'low_shot_train.json'}: draw {key!r} names files not in train/bad: {missing[:5]}"
            )
