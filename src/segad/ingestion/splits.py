"""Benchmark regimes: which image plays which role for each split seed.

Roles (docs/schemas.md): `detector_train` (good images the detectors are fitted on),
`brf_train` (good images the detectors never see, plus the regime's bad training images),
`test`, `unused`. The good training images of each category are divided between
detector_train and brf_train by `detector_share` (VAD: 0.5; VisA reference: 0.9) and `good_split`:
- `per_seed`: a new division for every split seed (drawn with the seed);
- `fixed`: one division for all seeds, drawn with `good_split_seed` (the VisA reference: one
  split with random_state 333), so the detectors are fitted once per category and reused.

Regimes (SegAD paper, section 4-5):
- `one_class`: no real bad image in brf_train (the defects stage adds synthetic ones).
- `high_shot`: every training bad image goes to brf_train.
- `low_shot`: `low_shot_n` training bad images per seed (drawn with the seed, or VAD's
  low_shot_train.json draws in key order: integer keys numerically, "2" before "10"), the rest unused.
- `visa_supervised`: `visa_moved_bad` test bad images per category move to brf_train per seed;
  the rest of the test set stays (a category with visa_moved_bad or fewer test bad images is an error).
- `kfold`: k-fold cross-validation over all images (SensumSODF); split_seed is the fold number.
  The folds are drawn once with `kfold_seed` (stratified by label) or read from official fold files.

Example:
    >>> from segad.ingestion.splits import SplitConfig, make_splits
    >>> from segad.config import SplitOptions
    >>> config = SplitConfig(benchmark="high_shot", seeds=(0, 1), options=SplitOptions(detector_share=0.9))
    >>> splits = make_splits(index, config)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedKFold

from segad.config import SplitOptions
from segad.schemas import Splits, columns
from segad.vocabulary import BENCHMARKS, ROLES, TRAINING_ROLES

SPLIT_COLUMNS = columns(Splits)

log = logging.getLogger(__name__)


class SplitError(ValueError):
    """The regime cannot be built from this index; the message says which category and why."""


@dataclass(frozen=True)
class SplitConfig:
    """What one run splits: the regime ``benchmark``, its split ``seeds`` and the `split` block's
    knobs (``options``: `segad.config.SplitOptions`, where each knob's type, default and range are
    defined), plus what the dataset supplies: VAD's low_shot_train.json draws (``low_shot_draws``:
    draw key -> bad image file names) and official fold files (``official_folds``: category -> fold
    -> part -> file stems). Checks the combinations of the run and the knobs (`SplitError`)."""

    benchmark: str = "high_shot"
    seeds: tuple[int, ...] = (0, 1, 2)
    options: SplitOptions = field(default_factory=SplitOptions)
    low_shot_draws: dict[str, list[str]] = field(default_factory=dict)
    official_folds: dict[str, dict[int, dict[str, set[str]]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.benchmark not in BENCHMARKS:
            raise SplitError(f"unknown benchmark {self.benchmark!r}; expected one of {', '.join(BENCHMARKS)}")
        if not self.seeds:
            raise SplitError("seeds is empty: give at least one split seed")
        if self.options.good_split == "fixed" and self.benchmark == "kfold":
            raise SplitError(
                "good_split 'fixed' needs the same good training images for every seed; "
                "kfold changes them per fold: use good_split per_seed"
            )


def make_splits(index: pd.DataFrame, config: SplitConfig) -> pd.DataFrame:
    """One row per (image, split_seed) with its role; see the module docstring for the regimes."""
    parts = []
    for category, images in index.groupby("category", sort=True):
        for seed in config.seeds:
            roles = _roles(images, config, int(seed), str(category))
            parts.append(pd.DataFrame({"image_id": images.image_id.to_numpy(), "split_seed": int(seed), "role": roles}))
    splits = pd.concat(parts, ignore_index=True)
    splits["in_benchmark"] = splits.role != "unused"
    splits = splits.astype({"image_id": "string", "split_seed": "int64", "role": "string", "in_benchmark": "bool"})
    check_splits(splits, index, config.benchmark)
    return splits[list(SPLIT_COLUMNS)]


def check_splits(splits: pd.DataFrame, index: pd.DataFrame, benchmark: str) -> None:
    """Raise SplitError if a rule is broken: one role per image and seed, test images never in a
    training role (except the moved bad ones of visa_supervised, and every image under kfold),
    detector_train good only."""
    if splits.duplicated(["image_id", "split_seed"]).any():
        raise SplitError("an image has two roles for one split seed")
    unknown = set(splits.role.unique()) - set(ROLES)
    if unknown:
        raise SplitError(f"unknown roles {sorted(unknown)}")
    merged = splits.merge(index[["image_id", "split", "label"]], on="image_id", how="left", validate="many_to_one")
    if merged.label.isna().any():
        raise SplitError("splits name images that are not in the image index")
    if (merged[merged.role == "detector_train"].label != 0).any():
        raise SplitError("a bad image has role detector_train")
    leaked = merged[(merged.split == "test") & merged.role.isin(TRAINING_ROLES)]
    if benchmark == "visa_supervised":
        leaked = leaked[(leaked.role != "brf_train") | (leaked.label != 1)]
    if benchmark != "kfold" and len(leaked):
        raise SplitError(f"test images in a training role, e.g. {leaked.image_id.iloc[0]}")


def _roles(images: pd.DataFrame, config: SplitConfig, seed: int, category: str) -> np.ndarray:
    rng = np.random.default_rng([seed, _stable_hash(category)])
    roles = np.full(len(images), "unused", dtype=object)
    label = images.label.to_numpy()
    is_train = (images.split == "train").to_numpy()
    is_test = ~is_train

    if config.benchmark == "kfold":
        fold_of = _folds(images, config, category)
        if seed not in set(fold_of):
            raise SplitError(f"{category}: fold {seed} does not exist (folds {sorted(set(fold_of))})")
        is_test = fold_of == seed
        is_train = ~is_test

    roles[is_test] = "test"
    train_good = np.flatnonzero(is_train & (label == 0))
    if len(train_good) < 2:
        raise SplitError(
            f"{category}: {len(train_good)} good training image(s); need at least 2 to split "
            "between detector_train and brf_train"
        )
    if config.options.good_split == "fixed":  # one division for every seed; `rng` still draws the bad images
        shuffled = np.random.default_rng([config.options.good_split_seed, _stable_hash(category)]).permutation(
            train_good
        )
    else:
        shuffled = rng.permutation(train_good)
    n_detector = min(max(1, int(round(config.options.detector_share * len(shuffled)))), len(shuffled) - 1)
    roles[shuffled[:n_detector]] = "detector_train"
    roles[shuffled[n_detector:]] = "brf_train"

    train_bad = np.flatnonzero(is_train & (label == 1))
    if config.benchmark in ("high_shot", "kfold"):
        roles[train_bad] = "brf_train"
    elif config.benchmark == "low_shot":
        roles[_low_shot(images, train_bad, config, seed, rng, category)] = "brf_train"
    elif config.benchmark == "visa_supervised":
        test_bad = np.flatnonzero(is_test & (label == 1))
        if len(test_bad) <= config.options.visa_moved_bad:
            raise SplitError(
                f"{category}: {len(test_bad)} test bad image(s); cannot move "
                f"{config.options.visa_moved_bad} to brf_train and keep some for test"
            )
        roles[rng.choice(test_bad, config.options.visa_moved_bad, replace=False)] = "brf_train"
    if config.benchmark != "one_class" and not (roles[label == 1] == "brf_train").any():
        raise SplitError(
            f"{category}: the {config.benchmark} regime needs bad training images; "
            "this category has none (use benchmark one_class)"
        )
    return roles


def draw_order(keys: Iterable[str]) -> list[str]:
    """Low-shot draw keys in seed order: integer keys numerically ("2" before "10"), then the rest as strings."""
    return sorted(keys, key=lambda k: (0, int(k), "") if k.isdigit() else (1, 0, k))


def _low_shot(
    images: pd.DataFrame, train_bad: np.ndarray, config: SplitConfig, seed: int, rng: np.random.Generator, category: str
) -> np.ndarray:
    if config.low_shot_draws:
        keys = draw_order(config.low_shot_draws)
        position = list(config.seeds).index(seed)
        if position >= len(keys):
            raise SplitError(
                f"low_shot_train.json has {len(keys)} draws; seed {seed} is seed number "
                f"{position + 1}: give at most {len(keys)} seeds"
            )
        names = set(config.low_shot_draws[keys[position]])
        file_names = images.image_id.iloc[train_bad].map(lambda i: i.rsplit("/", 1)[-1]).to_numpy()
        drawn = train_bad[np.isin(file_names, list(names))]
        absent = sorted(names - set(file_names))
        if absent:  # skipped as unreadable (dataset.on_bad_image: skip) or deleted: the draw shrinks
            log.warning(
                "low_shot draw %r (split_seed %s, category %s): %d of the %d listed bad images are in the "
                "image index, so the BRF trains on %d fewer bad images; not found: %s",
                keys[position],
                seed,
                category,
                len(drawn),
                len(names),
                len(absent),
                absent[:5],
            )
        return drawn
    if len(train_bad) < config.options.low_shot_n:
        raise SplitError(
            f"{category}: low_shot_n={config.options.low_shot_n} but only {len(train_bad)} training bad images"
        )
    return rng.choice(train_bad, config.options.low_shot_n, replace=False)


def _folds(images: pd.DataFrame, config: SplitConfig, category: str) -> np.ndarray:
    """Fold number of each image: official fold files' test parts, or seeded stratified folds."""
    official = config.official_folds.get(category)
    stems = images.image_id.map(lambda i: i.rsplit("/", 1)[-1].rsplit(".", 1)[0]).to_numpy()
    fold_of = np.full(len(images), -1)
    if official:
        kinds = np.where(images.label.to_numpy() == 1, "pos", "neg")
        for fold, parts in official.items():
            in_test = np.isin(stems, list(parts.get("test", set())))
            fold_of[in_test & (fold_of == -1)] = fold
        missing = images.image_id[fold_of == -1]
        if len(missing):
            raise SplitError(
                f"{category}: {len(missing)} image(s) in no official test fold, e.g. {missing.iloc[0]} ({kinds[0]})"
            )
        return fold_of
    if len(images) < config.options.n_folds:
        raise SplitError(f"{category}: n_folds={config.options.n_folds} but only {len(images)} image(s)")
    seed = int(np.random.default_rng([config.options.kfold_seed, _stable_hash(category)]).integers(2**31))
    return stratified_folds(images.label.to_numpy(), config.options.n_folds, seed)


def stratified_folds(labels: np.ndarray, n_folds: int, seed: int) -> np.ndarray:
    """Fold number (0..n_folds-1) of each row: scikit-learn's shuffled `StratifiedKFold`, so each
    label is spread evenly over the folds. Needs at least `n_folds` rows."""
    fold = np.full(len(labels), -1, dtype=np.int64)
    splitter = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    for k, (_, held_out) in enumerate(splitter.split(np.zeros((len(labels), 1)), labels)):
        fold[held_out] = k
    return fold


def defect_type_folds(labels: np.ndarray, defect_types: np.ndarray | None, n_folds: int, seed: int) -> np.ndarray:
    """Fold number of each row, holding out whole defect types where the bad rows name two or more.

    A bad row's fold then never shares its defect type with the rows a fold model trains on, so an
    out-of-fold score estimates how a supervised model does on a defect type it has not seen, as a
    test set's unseen defects are (VAD's ``bad_unseen_defects``, an MVTec-style test folder per
    type). Types are placed largest first (ties in seeded order) on the fold with the fewest bad
    rows; good rows are spread evenly in seeded order; k = min(`n_folds`, number of types). With
    fewer than two types (ELPV's single ``bad``, no types given) this is `stratified_folds`.
    """
    labels = np.asarray(labels)
    bad = labels == 1
    types = None if defect_types is None else np.asarray(defect_types, dtype=object)
    names = sorted({str(t) for t in types[bad]}) if types is not None else []
    if types is None or len(names) < 2:
        return stratified_folds(labels, n_folds, seed)
    k = min(int(n_folds), len(names))
    rng = np.random.default_rng(seed)
    counts = {name: int((types[bad] == name).sum()) for name in names}
    order = sorted(rng.permutation(len(names)), key=lambda i: -counts[names[i]])
    fold = np.full(len(labels), -1, dtype=np.int64)
    load = np.zeros(k, dtype=np.int64)
    for i in order:
        target = int(np.argmin(load))
        fold[bad & (types == names[i])] = target
        load[target] += counts[names[i]]
    good = np.flatnonzero(~bad)
    fold[good[rng.permutation(good.size)]] = np.arange(good.size) % k
    return fold


def _stable_hash(text: str) -> int:
    """A process-independent small integer for a string (Python's hash() is salted)."""
    return zlib.crc32(text.encode("utf-8"))


def check_training_rows(
    splits: pd.DataFrame,
    index: pd.DataFrame,
    benchmark: str,
    *,
    bundle: tuple[int, str | None] | None = None,
    cross_fit_folds: int = 0,
    top_up_share: float = 0.0,
    top_up_below: int | None = None,
) -> list[str]:
    """Fail at the split, not stages later, when a seed lacks the rows later stages need.

    Counts the brf_train rows of every (split seed, category): good, real bad, and the synthetic
    defects the defects stage will add (one_class: one per good row; other regimes: the top-up,
    ``top_up_share`` of the goods where fewer than ``top_up_below`` real bad rows exist). Raises
    SplitError, naming the seed, the category, the counts and the setting to change, when

    - a seed has no good or no bad test row (the evaluation's metrics need both);
    - a (seed, category) lacks a good or a bad brf_train row (the BRF needs both classes);
    - the bundled (seed, category) of ``bundle`` (None: no bundle; a None category: the run's
      only one) has fewer than 2 good or 2 bad rows (its out-of-fold calibration needs 2 folds).

    Returns warnings (one per seed and category) where the classifier's ``cross_fit_folds``
    exceed the bad rows: it then trains fewer folds, or one model
    (`segad.meta.classifier_protocol.usable_folds`).
    """
    labels = index.set_index("image_id")["label"].astype(int)
    categories = index.set_index("image_id")["category"].astype(str)
    rows = splits.assign(label=splits["image_id"].map(labels), category=splits["image_id"].map(categories))
    for seed, test in rows[rows["role"] == "test"].groupby("split_seed"):
        if not ((test["label"] == 0).any() and (test["label"] == 1).any()):
            raise SplitError(
                f"split_seed {seed}: {int((test['label'] == 0).sum())} good and {int((test['label'] == 1).sum())} "
                "bad test images; the evaluation needs both (check the dataset's test folders)"
            )
    train = rows[rows["role"] == "brf_train"]
    warnings = []
    only = sorted(set(categories)) if len(set(categories)) == 1 else []
    for (seed, category), group in train.groupby(["split_seed", "category"]):
        good, real_bad = int((group["label"] == 0).sum()), int((group["label"] == 1).sum())
        if benchmark == "one_class":
            synthetic = good
        elif top_up_share > 0 and (top_up_below is None or real_bad < top_up_below) and good:
            synthetic = max(1, round(top_up_share * good))
        else:
            synthetic = 0
        bad = real_bad + synthetic
        counts = f"{good} good and {bad} bad brf_train rows ({real_bad} real, {synthetic} synthetic)"
        where = f"split_seed {seed}, category {category!r}"
        more_bad = (
            "more good training images or a lower split.detector_share"
            if benchmark == "one_class"
            else "more bad training images (split.low_shot_n for low_shot, split.visa_moved_bad for "
            "visa_supervised) or synthetic ones beside them (defects.top_up_share > 0)"
        )
        if not good or not bad:
            raise SplitError(f"{where}: {counts}; the BRF needs at least one of each: give it {more_bad}")
        bundled = bundle is not None and int(seed) == bundle[0] and category in ([bundle[1]] if bundle[1] else only)
        if bundled and (good < 2 or bad < 2):
            raise SplitError(
                f"{where}: {counts}; the bundle's out-of-fold calibration needs at least 2 of each: give it "
                f"{more_bad if bad < 2 else 'more good training images'}, or set bundle.build: false"
            )
        if cross_fit_folds and bad < cross_fit_folds:
            warnings.append(
                f"{where}: {bad} bad brf_train rows for classifier.cross_fit_folds={cross_fit_folds}; the "
                f"classifier will use {f'{bad} folds' if bad >= 2 else 'one model (the paper protocol)'}"
            )
    return warnings
