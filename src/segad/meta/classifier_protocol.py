"""Which images train the classifier g(I) and which model scores each row: the two protocols.

Per split seed, the training pool is that seed's real training images (roles ``detector_train``
and ``brf_train``) plus the seed's synthetic defects as bad images: the whole bad class in benchmark
``one_class`` (no real bad training image), a top-up beside the real ones elsewhere
(``defects.top_up_share``). Rows scored: ``brf_train``, synthetic and ``test``. ``cross_fit_folds``:

- ``0``, the paper's protocol: one model on a seeded, label-stratified ``train_share`` of the pool
  scores every row, so most ``brf_train`` rows are scored by a model that trained on them, and the
  BRF learns from scores cleaner than the test rows' will be.
- ``K >= 2``, cross-fitted: the BRF's training rows (``brf_train`` and synthetic) are cut into K
  folds, label-stratified, or by whole defect types where the bad rows name two or more
  (`segad.ingestion.splits.defect_type_folds`: K then at most the number of types, and a bad
  row is scored by a model that never saw its type, as the test's unseen defects will be); fold k is scored by a model trained on the ``detector_train`` images plus
  the other folds, and test rows get the mean logit of the K models. Every score the BRF trains on
  comes from a model that did not see that image. K fits instead of one. K is lowered to the
  number of bad BRF training images when there are fewer (every fold model needs a bad image), and
  below 2 the seed falls back to the paper's protocol (logged; `usable_folds`).

Each seed's scores carry their store key (``model_key``, ``classifier/seed_<s>/<digest>``); with a
models folder the seed's model (or K models) are kept under that key
(`segad.meta.classifier_models`), so a production bundle can score new images with exactly the
model(s) that scored the seed's test rows.

Example:
    >>> import numpy as np
    >>> from segad.meta.classifier_protocol import stratified_share
    >>> stratified_share(np.array([0, 0, 0, 0, 1, 1]), 0.5, seed=0).size
    3
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from segad.ingestion.splits import defect_type_folds
from segad.meta.classifier import ClassifierConfig, empty_scores, fit_classifier, predict_scores
from segad.meta.classifier_models import models_kept, save_classifiers
from segad.meta.classifier_stem import ActivationCache
from segad.storage.files import file_sha256
from segad.storage.images import ImageSize, SizeLike
from segad.storage.map_store import MapStore, MapStoreError
from segad.vocabulary import TRAINING_ROLES

#: bump when a change of this module or of the classifier's training changes the scores
SCORES_FORMAT = 1

log = logging.getLogger(__name__)


def stratified_share(labels: np.ndarray, share: float, seed: int) -> np.ndarray:
    """Indices of a seeded, label-stratified `share` of the rows (at least one per label present)."""
    rng = np.random.default_rng(seed)
    chosen = []
    for value in np.unique(labels):
        idx = np.flatnonzero(labels == value)
        take = max(1, int(round(share * len(idx))))
        chosen.append(rng.choice(idx, size=take, replace=False))
    return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, dtype=np.int64)


def usable_folds(folds: int, n_bad: int, seed: int) -> int:
    """The K used for a seed whose BRF rows hold `n_bad` bad images: at most one fold per bad image
    (each fold model must train on a bad image); 0 (the paper's protocol) when fewer than 2."""
    if folds == 0 or n_bad >= folds:
        return folds
    used = n_bad if n_bad >= 2 else 0
    log.warning(
        "classifier (seed %d): %d bad BRF training image(s) for cross_fit_folds=%d; using %s",
        seed,
        n_bad,
        folds,
        f"{used} folds" if used else "the paper's protocol (one model)",
    )
    return used


def _cross_fitted_scores(
    pool: tuple[np.ndarray, np.ndarray],
    brf: np.ndarray,
    test_paths: np.ndarray,
    config: ClassifierConfig,
    image_size: SizeLike,
    seed: int,
    device: str,
    cache: ActivationCache | None,
    brf_folds: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, list]:
    """Protocol K >= 2: out-of-fold logits of the pool's BRF rows (`brf`, bool mask; their fold
    numbers 0..K-1 in `brf_folds`), mean test logits and the K models (fold order)."""
    paths, labels = pool
    folds = int(brf_folds.max()) + 1
    fold = np.full(len(paths), -1)
    fold[brf] = brf_folds
    brf_scores = np.zeros(len(paths))
    test_scores = np.zeros(len(test_paths))
    models = []
    for k in range(folds):
        inside = fold != k
        model = fit_classifier(
            paths[inside].tolist(), labels[inside], config, image_size, seed * 1000 + k, device, cache
        )
        brf_scores[~inside] = predict_scores(
            model, paths[~inside].tolist(), image_size, config.batch_size, device, cache
        )
        test_scores += predict_scores(model, test_paths.tolist(), image_size, config.batch_size, device, cache)
        models.append(model)
    return brf_scores[brf], test_scores / folds, models


def classifier_scores(
    image_index: pd.DataFrame,
    splits: pd.DataFrame,
    synthetic_index: pd.DataFrame | None,
    config: ClassifierConfig,
    image_size: SizeLike,
    device: str = "cpu",
    store: MapStore | None = None,
    models: str | Path | None = None,
) -> pd.DataFrame:
    """Per split seed: scores of the brf_train, synthetic and test rows (module docstring, protocols).

    With `store`, each seed's scores are kept under a key of everything they depend on (settings,
    image size, seed, and each row's role, label and file content), so a rerun that changes none
    of it trains nothing; scores are float32 (as stored) either way. With `models` (a folder) the
    trained model(s) are kept under the same key; stored scores whose models are not kept are
    computed again (once), so the two always belong together. Columns: image_id, split_seed,
    score, model_key (the key)."""
    if device == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    paths = image_index.set_index("image_id")["path"]
    labels = image_index.set_index("image_id")["label"]
    # defect types where the index names them (an index built by hand may not): folds by type
    no_types = pd.Series(None, index=image_index["image_id"], dtype=object)
    types = image_index.set_index("image_id").get("defect_type", no_types).astype(object)
    frames = []
    # shared by the seeds
    cache = ActivationCache(config.batch_size, config.backend) if config.mode == "frozen" else None
    digest = functools.lru_cache(maxsize=None)(file_sha256)  # each file hashed once, not once per seed
    if store is not None:
        log.info("classifier: scores kept in %s", store.root)
    for seed, rows in splits.groupby("split_seed", sort=True):
        train = rows[rows["role"].isin(TRAINING_ROLES)]
        ids = train["image_id"].to_numpy()
        pool_paths = paths.loc[ids].to_numpy()
        pool_labels = labels.loc[ids].to_numpy().astype(np.int64)
        pool_types = types.loc[ids].to_numpy()
        brf = (train["role"] == "brf_train").to_numpy()
        if synthetic_index is not None and (synthetic_index["split_seed"] == seed).any():
            # the seed's synthetic defects (one_class: the bad class; else a top-up): bad rows the BRF trains on
            synthetic = synthetic_index[synthetic_index["split_seed"] == seed]
            ids = np.concatenate([ids, synthetic["image_id"].to_numpy()])
            pool_paths = np.concatenate([pool_paths, synthetic["path"].to_numpy()])
            pool_labels = np.concatenate([pool_labels, np.ones(len(synthetic), dtype=np.int64)])
            kinds = synthetic.get("defect_type", pd.Series([None] * len(synthetic), dtype=object))
            pool_types = np.concatenate([pool_types, kinds.astype(object).to_numpy()])
            brf = np.concatenate([brf, np.ones(len(synthetic), dtype=bool)])
        test_ids = rows.loc[rows["role"] == "test", "image_id"].to_numpy()
        test_paths = paths.loc[test_ids].to_numpy()
        folds = usable_folds(config.cross_fit_folds, int(pool_labels[brf].sum()), int(seed))
        # whole defect types held out where the bad rows name two or more (`defect_type_folds`)
        brf_folds = defect_type_folds(pool_labels[brf], pool_types[brf], folds, int(seed)) if folds else None
        folds = int(brf_folds.max()) + 1 if brf_folds is not None else 0
        key = _scores_key(
            config, image_size, int(seed), ids, pool_paths, pool_labels, brf, test_ids, test_paths, digest, brf_folds
        )
        score = _stored(store, key)
        if score is not None and models is not None and not models_kept(models, key, max(folds, 1)):
            log.info("classifier: split seed %s has stored scores but no kept models: trained again", seed)
            score = None
        if score is None:
            if brf_folds is None:
                chosen = stratified_share(pool_labels, config.train_share, int(seed))
                model = fit_classifier(
                    pool_paths[chosen].tolist(), pool_labels[chosen], config, image_size, int(seed), device, cache
                )
                scored = np.concatenate([pool_paths[brf], test_paths]).tolist()
                score = predict_scores(model, scored, image_size, config.batch_size, device, cache)
                trained = [model]
            else:
                pool = (pool_paths, pool_labels)
                brf_scores, test_scores, trained = _cross_fitted_scores(
                    pool, brf, test_paths, config, image_size, int(seed), device, cache, brf_folds
                )
                score = np.concatenate([brf_scores, test_scores])
            if models is not None:
                save_classifiers(trained, config, image_size, models, key)
            score = score.astype(np.float32)  # as stored, so a cached rerun gives the same features
            if store is not None:
                store.write(key, score[None, :])
        frames.append(
            pd.DataFrame(
                {
                    "image_id": np.concatenate([ids[brf], test_ids]),
                    "split_seed": int(seed),
                    "score": score.astype(np.float64),
                    "model_key": key,
                }
            )
        )
    return pd.concat(frames, ignore_index=True) if frames else empty_scores()


def _scores_key(
    config: ClassifierConfig,
    image_size: SizeLike,
    seed: int,
    ids: np.ndarray,
    pool_paths: np.ndarray,
    pool_labels: np.ndarray,
    brf: np.ndarray,
    test_ids: np.ndarray,
    test_paths: np.ndarray,
    digest: Callable[[str], str] = file_sha256,
    brf_folds: np.ndarray | None = None,
) -> str:
    """Store key of one seed's scores: a digest of what they depend on (not of where weights are
    cached), the cross-fitting folds of the BRF rows included."""
    settings = {k: v for k, v in dataclasses.asdict(config).items() if k not in ("enabled", "cache_dir")}
    rows = {
        "format": SCORES_FORMAT,
        "settings": settings,
        "size": list(ImageSize.parse(image_size).hw),
        "seed": seed,
        "pool": [[str(i), int(y), bool(b), digest(p)] for i, p, y, b in zip(ids, pool_paths, pool_labels, brf)],
        "test": [[str(i), digest(p)] for i, p in zip(test_ids, test_paths)],
        "folds": None if brf_folds is None else [int(f) for f in brf_folds],
    }
    key = hashlib.sha256(json.dumps(rows, sort_keys=True, default=str).encode()).hexdigest()[:32]
    return f"classifier/seed_{seed}/{key}"


def _stored(store: MapStore | None, key: str) -> np.ndarray | None:
    """The stored scores (float32, N) under `key`, or None when absent or unreadable (then computed again)."""
    if store is None or not store.exists(key):
        return None
    try:
        return store.read(key)[0]
    except MapStoreError as error:
        log.warning("classifier: stored scores %s unreadable (%s): computed again", key, error)
        return None
