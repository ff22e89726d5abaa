"""Typed parameters: every block a node reads is checked by Kedro before any node runs, and the run
configuration (`segad.config.RunConfig`) by `segad.hooks.RunConfigHooks`."""

from __future__ import annotations

import dataclasses
import shutil
from collections import Counter
from typing import get_args

import pytest
import yaml
from kedro.config import OmegaConfigLoader
from kedro.io import DataCatalog, MemoryDataset
from kedro.validation import ParameterValidationError, ParameterValidator

from segad import config, vocabulary
from segad.config import (
    STAGE_BLOCKS,
    DatasetConfig,
    ParameterError,
    PlotOptions,
    ReportOptions,
    RunConfig,
    ScoreOptions,
    SplitOptions,
)
from segad.detection.config import (
    SUPPORTED_DETECTORS,
    DetectorConfig,
    DetectorParams,
    DetectorSettings,
    FitSettings,
    SupervisedSettings,
)
from segad.detection.saved import model_key
from segad.detection.supervised_config import SupervisedConfig
from segad.ingestion import layouts, splits
from segad.ingestion.defects import DefectConfig
from segad.ingestion.demo import LOGICAL_DEFECTS, STRUCTURAL_DEFECTS, DefectType, DemoConfig
from segad.meta.brf_params import BRFConfig, BRFParams
from segad.meta.classifier import ClassifierConfig
from segad.production.assemble import BundleOptions
from segad.segments.features import FeatureConfig
from segad.segments.segment_maps import SegmentMapConfig
from segad.versions import jsonable
from tests.conftest import PROJECT_ROOT, copy_project, kedro_run, one_detector

#: The parameter class of each block a node of this project reads typed.
TYPED = {
    "demo": DemoConfig,
    "defects": DefectConfig,
    "segmentation": SegmentMapConfig,
    "classifier": ClassifierConfig,
    "features": FeatureConfig,
    "brf": BRFParams,
    "evaluation.plots": PlotOptions,
    "evaluation.report": ReportOptions,
    "bundle": BundleOptions,
    "split": SplitOptions,
    "score": ScoreOptions,
    "dataset": DatasetConfig,
    # one namespaced anomaly_maps pipeline per run detector (the default run: patchcore, padim)
    "anomaly_maps.patchcore": DetectorParams,
    "anomaly_maps.padim": DetectorParams,
}


def project_parameters(env: str = "local") -> dict:
    from segad.settings import CONFIG_LOADER_ARGS

    loader = OmegaConfigLoader(str(PROJECT_ROOT / "conf"), env=env, **CONFIG_LOADER_ARGS)  # as a session loads it
    return loader["parameters"]


def test_literal_values_follow_the_library_constants():
    # one definition each (segad.vocabulary): the parameter classes and the ingestion code use it, no copy
    assert (config.Layout, config.Benchmark, config.GoodSplit) == (
        vocabulary.Layout,
        vocabulary.Benchmark,
        vocabulary.GoodSplit,
    )
    assert layouts.LAYOUTS is vocabulary.LAYOUTS and set(layouts.READERS) == set(vocabulary.LAYOUTS)
    assert splits.BENCHMARKS is vocabulary.BENCHMARKS  # good_split: SplitOptions.good_split (GoodSplit above)
    assert set(get_args(DefectType)) == set(LOGICAL_DEFECTS + STRUCTURAL_DEFECTS)


@pytest.mark.parametrize("env", ["local", "elpv"])
def test_every_environment_is_a_valid_run_configuration(env):
    parameters = project_parameters(env)
    run = RunConfig.from_parameters(parameters)
    assert run.detectors == parameters["detectors"] and isinstance(run.dataset, DatasetConfig)
    assert set(parameters) <= {*run.as_parameters(), *STAGE_BLOCKS}


@pytest.mark.parametrize("env", ["local", "elpv", "visa"])
def test_a_runtime_parameter_changes_one_key_and_keeps_the_rest_of_its_block(env, tmp_path):
    """`--params classifier.cross_fit_folds=0` under an environment with a parameters file: the other
    classifier settings stay conf's (Kedro's default merge replaced the block, switching it off)."""
    from segad.settings import CONFIG_LOADER_ARGS

    conf = tmp_path / "conf"
    shutil.copytree(PROJECT_ROOT / "conf", conf)
    (conf / "local" / "parameters.yml").write_text(yaml.safe_dump({"seeds": [0]}))  # a user's override file
    runtime = {"classifier": {"cross_fit_folds": 0}, "segmentation": {"method": "single"}}
    parameters = OmegaConfigLoader(str(conf), env=env, runtime_params=runtime, **CONFIG_LOADER_ARGS)["parameters"]
    base = OmegaConfigLoader(str(conf), env=env, **CONFIG_LOADER_ARGS)["parameters"]
    assert parameters["classifier"] == {**base["classifier"], "cross_fit_folds": 0}
    assert parameters["classifier"]["enabled"] is True
    assert parameters["segmentation"] == {**base["segmentation"], "method": "single"}


def test_kedro_finds_and_builds_every_typed_block_of_the_registered_pipelines(monkeypatch):
    from segad.pipeline_registry import register_pipelines, use_detectors

    monkeypatch.chdir(PROJECT_ROOT)
    use_detectors(None)
    validator = ParameterValidator(register_pipelines())
    assert validator.type_extractor.extract_types_from_pipelines() == TYPED
    typed = validator.validate_raw_params(project_parameters())
    assert isinstance(typed["brf"].settings, BRFConfig) and typed["brf"].combinations is None
    assert isinstance(typed["evaluation"]["plots"], PlotOptions)
    assert typed["dataset"] == DatasetConfig(**project_parameters()["dataset"])  # the run's dataset block
    assert isinstance(typed["split"], SplitOptions) and isinstance(typed["score"], ScoreOptions)
    assert isinstance(typed["anomaly_maps"]["padim"], DetectorParams)
    assert isinstance(typed["anomaly_maps"]["efficient_ad"], dict)  # not a run detector: not a node input
    assert typed["demo"].seen_defects == tuple(project_parameters()["demo"]["seen_defects"])
    assert jsonable(typed) == jsonable(validator.validate_raw_params(jsonable(typed)))


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"features": {"thread": 2}}, r"'features'.*\n.*thread\n  Unexpected keyword argument"),
        ({"features": {"batch_size": "many"}}, r"'features'.*\n.*batch_size\n  Input should be a valid integer"),
        ({"brf": {"model": {"max_depht": 3}}}, r"'brf'.*\n.*model\.max_depht\n  Unexpected keyword argument"),
        ({"defects": {"kinds": ["scratch"]}}, r"'defects'.*\n.*kinds\.0\n  Input should be 'blur' or 'rectangle'"),
        ({"evaluation": {"plots": {"n_wrost": 2}, "report": {"plot_dirs": {}}}}, r"'evaluation.plots'.*\n.*n_wrost"),
        ({"split": {"detector_shar": 0.5}}, r"'split'.*\n.*detector_shar\n  Unexpected keyword argument"),
        ({"split": {"detector_share": 1.5}}, r"'split'.*\n.*detector_share\n  Input should be less than 1"),
        ({"split": {"good_split": "fixd"}}, r"'split'.*\n.*good_split\n  Input should be 'per_seed' or 'fixed'"),
        ({"score": {"explian": "all"}}, r"'score'.*\n.*explian\n  Unexpected keyword argument"),
        ({"score": {"explain": "some"}}, r"'score'.*\n.*explain\n  Input should be 'rejected', 'all' or 'none'"),
        (
            {"anomaly_maps.patchcore": {"batch_sise": 4}},
            r"'anomaly_maps.patchcore'.*\n.*batch_sise\n  Unexpected keyword argument",
        ),
        (
            {"anomaly_maps.padim": {"batch_size": 0}},
            r"'anomaly_maps.padim'.*\n.*batch_size\n  Input should be greater than or equal to 1",
        ),
        (
            {"anomaly_maps.padim": {"batch_size": "8"}},
            r"'anomaly_maps.padim'.*\n.*batch_size\n  Input should be a valid integer",
        ),
        ({"anomaly_maps.padim": {"amp": "yes"}}, r"'anomaly_maps.padim'.*\n.*amp\n  Input should be a valid boolean"),
        ({"anomaly_maps.padim": {"quantiles_from": "test"}}, r"'anomaly_maps.padim'.*\n.*quantiles_from\n"),
    ],
)
def test_a_typo_in_a_typed_block_fails_naming_the_block_and_the_key(monkeypatch, change, named):
    from segad.pipeline_registry import register_pipelines, use_detectors

    monkeypatch.chdir(PROJECT_ROOT)
    use_detectors(None)
    parameters = project_parameters()
    for key, values in change.items():
        if key.startswith("anomaly_maps."):  # a change to one detector's block, the others as configured
            detector = key.removeprefix("anomaly_maps.")
            blocks = parameters["anomaly_maps"]
            parameters["anomaly_maps"] = {**blocks, detector: {**blocks[detector], **values}}
        else:
            parameters[key] = values
    with pytest.raises(ParameterValidationError, match=named):
        ParameterValidator(register_pipelines()).validate_raw_params(parameters)


def test_a_typed_detector_block_builds_the_detector_config_of_its_mapping():
    """model_key (the hashed identity of fitted detectors and stored maps) is unchanged by the typed block."""
    blocks = project_parameters()["anomaly_maps"]
    for name in SUPPORTED_DETECTORS:
        typed = DetectorParams(**blocks[name])
        before, after = DetectorConfig.from_dict(name, blocks[name]), DetectorConfig.from_dict(name, typed)
        assert after == before and after.identity() == before.identity(), name
        assert model_key(after, 256, ["a", "b"]) == model_key(before, 256, ["a", "b"]), name
        assert DetectorConfig.from_dict(name, typed.settings()) == before
    assert DetectorParams().settings() == {} and DetectorConfig.from_dict("padim", DetectorParams()).to_dict() == (
        DetectorConfig.from_dict("padim", {}).to_dict()
    )
    assert DetectorParams(**blocks["external"]).settings() == {"kind": "external"}
    assert DetectorParams(backend="eager").settings() == {}  # DetectorConfig's backend default: nothing to pass


def test_the_detector_specific_rules_stay_with_the_detector_config():
    with pytest.raises(ValueError, match="model.pre_trained is set by segad"):
        DetectorConfig.from_dict("padim", DetectorParams(model={"pre_trained": False}))
    with pytest.raises(ValueError, match="efficient_ad: train_batch_size must be 1"):
        DetectorConfig.from_dict("efficient_ad", DetectorParams(train_batch_size=2))
    with pytest.raises(ValueError, match=r"padim: unknown settings \['folder'\]"):
        DetectorConfig.from_dict("padim", DetectorParams(folder="/maps"))


def test_each_detector_setting_is_defined_once():
    """A setting's type, range and default are written in one settings class (`FitSettings`,
    `DetectorSettings`, `SupervisedSettings`); `DetectorConfig`, `DetectorParams` and
    `SupervisedConfig` inherit them, so their defaults cannot drift apart."""
    classes = (FitSettings, DetectorSettings, SupervisedSettings, DetectorConfig, DetectorParams, SupervisedConfig)
    fields = {cls: {f.name for f in dataclasses.fields(cls)} for cls in classes}
    written = Counter(name for cls in classes for name in vars(cls).get("__annotations__", {}) if name in fields[cls])
    assert written and max(written.values()) == 1, written
    assert fields[DetectorConfig] == fields[DetectorSettings] | {"name"}
    assert fields[DetectorParams] == fields[DetectorSettings] | fields[SupervisedSettings] | {
        "kind",
        "folder",
        "suffix",
        "distribute",
    }
    assert fields[SupervisedConfig] == fields[SupervisedSettings]
    params, plain = DetectorParams(), DetectorConfig(name="padim")
    shared = fields[DetectorSettings]
    assert {key: getattr(params, key) for key in shared} == {key: getattr(plain, key) for key in shared}
    supervised = SupervisedConfig.from_dict({})
    assert {key: getattr(params, key) for key in fields[SupervisedSettings]} == dataclasses.asdict(supervised)


def test_the_detector_settings_check_every_detector_config_setting():
    """`DetectorConfig.from_dict` names the detector in the checks of `DetectorSettings`."""
    with pytest.raises(ValueError, match=r"detector padim: num_workers: Input should be greater than or equal to 0"):
        DetectorConfig.from_dict("padim", {"num_workers": -1})
    with pytest.raises(ValueError, match=r"detector padim: seed: Input should be a valid integer \(got True\)"):
        DetectorConfig.from_dict("padim", {"seed": True})


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"image_sise": 128}, r"unknown top-level parameter\(s\) \['image_sise'\]"),
        ({"benchmark": "hihg_shot"}, r"benchmark: Input should be 'one_class', .* \(got 'hihg_shot'\)"),
        ({"seeds": ["a"]}, r"seeds\.0: Input should be a valid integer"),
        ({"seeds": []}, r"seeds: List should have at least 1 item"),
        ({"seeds": [0, 0]}, r"seeds must not repeat a value"),
        ({"image_size": 0}, r"image_size: Value error, height and width must be ints > 0, got 0"),
        ({"image_size": -32}, r"image_size: Value error, height and width must be ints > 0"),
        ({"image_size": [64, 64, 3]}, r"image_size: Value error, expected an int > 0, \[height, width\] or 'auto'"),
        ({"image_size": "square"}, r"image_size: Value error, expected an int > 0, \[height, width\] or 'auto'"),
        (
            {"image_size": [50, 70], "detectors": ["reverse_distillation"]},
            r"image_size: reverse_distillation needs each side a multiple of 32 pixels, got 50 x 70",
        ),
        ({"image_size": [48, 40], "detectors": ["fastflow"]}, r"image_size: fastflow needs each side a multiple of 16"),
        ({"image_size": 8}, r"image_size: patchcore needs each side at least 17 pixels, got 8 x 8 .*use e.g. 32"),
        ({"image_size": [64, 16], "detectors": ["padim"]}, r"image_size: padim needs each side at least 17 pixels"),
        ({"image_size": 128, "detectors": ["efficient_ad"]}, r"image_size: efficient_ad needs each side at least 256"),
        ({"device": "gpu"}, r"device: Input should be 'auto', 'cpu' or 'cuda'"),
        ({"dataset": {"layuot": "demo"}}, r"dataset\.layuot: Unexpected keyword argument"),
        ({"dataset": {"layout": "vda"}}, r"dataset\.layout: Input should be 'demo', 'vad'"),
        ({"detectors": ["patchcroe"]}, r"detectors \['patchcroe'\] have no anomaly_maps.<name> block"),
    ],
)
def test_a_wrong_run_key_fails_naming_the_key(change, named):
    with pytest.raises(ParameterError, match=named):
        RunConfig.from_parameters({**project_parameters(), **change})


@pytest.mark.parametrize("value", [256, [352, 192], "auto"])
def test_image_size_is_an_int_a_height_width_pair_or_auto(value):
    parameters = {**project_parameters(), "image_size": value, "detectors": ["patchcore", "reverse_distillation"]}
    assert RunConfig.from_parameters(parameters).as_parameters()["image_size"] == value


def test_the_parameters_tree_reaches_nodes_as_plain_values():
    from segad.hooks import RunConfigHooks

    typed = {"brf": BRFParams(), "evaluation": {"plots": PlotOptions()}, "seeds": [0]}
    catalog = DataCatalog({"parameters": MemoryDataset(typed)})
    RunConfigHooks().after_catalog_created(catalog=catalog, parameters={"parameters": typed})
    tree = catalog.load("parameters")
    assert tree["brf"]["preset"] == "guarded" and tree["brf"]["combinations"] is None
    assert tree["evaluation"]["plots"]["importance_type"] == "total_gain" and tree["seeds"] == [0]
    assert yaml.safe_load(yaml.safe_dump(tree)) == tree


def test_the_project_settings_register_the_run_config_hooks():
    from segad import settings
    from segad.hooks import RunConfigHooks

    assert any(isinstance(hook, RunConfigHooks) for hook in settings.HOOKS)


@pytest.mark.e2e
def test_kedro_run_stops_on_a_typo_before_any_node_runs(tmp_path):
    """The CLI path of both checks: the run keys (RunConfigHooks) and a typed block, in another
    environment and a namespaced detector block. Typos in every other typed block go through the
    same ParameterValidator in-process (test_a_typo_in_a_typed_block_fails_naming_the_block_and_the_key)."""
    # conf/two runs padim alone on a tiny demo, conf/patchcore the same with patchcore
    project = copy_project(
        tmp_path / "project", params={"two": one_detector("padim"), "patchcore": one_detector("patchcore")}
    )
    for args, named in [
        (
            ["--params", "image_sise=128"],
            "Error: Parameter validation failed (environment two): unknown top-level parameter(s) ['image_sise']",
        ),
        (["--env", "patchcore", "--params", "anomaly_maps.patchcore.batch_sise=4"], "batch_sise"),
    ]:
        env = [] if "--env" in args else ["--env", "two"]
        result = kedro_run(project, *env, *args, timeout=300)
        log = result.stdout + result.stderr
        assert result.returncode == 1, log[-3000:]
        assert named in " ".join(log.split()), log[-3000:]
        assert "Running node" not in log, log[-3000:]
        # nothing is written before a node runs, except the failure's full traceback (segad.log_hooks),
        # whose path the short error names
        written = sorted(f.relative_to(project).as_posix() for f in (project / "data").rglob("*") if f.is_file())
        error_log = "data/09_tracking/last_error.log"
        assert written == ([error_log] if f"full traceback: {project / error_log}" in log else []), written


def _leaves(tree: dict, prefix: str = "") -> dict[str, object]:
    """Dotted key -> value of every leaf of a parameter tree (a dict value is walked, a list is a leaf)."""
    out: dict[str, object] = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            out.update(_leaves(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


@pytest.mark.parametrize("env", ["elpv", "visa"])
def test_an_environment_holds_only_its_differences_from_base(env):
    base: dict = {}
    for path in sorted((PROJECT_ROOT / "conf" / "base").glob("parameters*.yml")):
        base.update(yaml.safe_load(path.read_text()) or {})
    base_leaves = _leaves(base)
    restated = [
        key
        for path in sorted((PROJECT_ROOT / "conf" / env).glob("parameters*.yml"))
        for key, value in _leaves(yaml.safe_load(path.read_text()) or {}).items()
        if key in base_leaves and base_leaves[key] == value
    ]
    assert not restated, f"conf/{env} restates conf/base values (environments merge key by key): {restated}"


#: Typed blocks whose conf/base values are not (yet) the class defaults, and why.
NOT_CLASS_DEFAULTS = {
    # the demo's folder is a path of this project, not of the library (elpv: null = its package)
    "dataset.root",
    # the run's backbone cache under globals.data_root (segad.storage.weights.backbone_cache of the
    # run's models folder); the class default None means the same function without a data root
    "classifier.cache_dir",
}


def _class_defaults(cls) -> dict[str, object]:
    defaults = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            defaults[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            defaults[f.name] = f.default_factory()
        else:
            defaults[f.name] = dataclasses.MISSING
    return defaults


@pytest.mark.parametrize("block", [b for b in TYPED if not b.startswith("anomaly_maps.")])
def test_conf_base_shows_every_setting_of_a_typed_block_at_its_class_default(block):
    """The parameter class is the one definition of a setting and its default; conf/base shows it."""
    from segad.settings import CONFIG_LOADER_ARGS

    loader = OmegaConfigLoader(str(PROJECT_ROOT / "conf"), env="local", **CONFIG_LOADER_ARGS)
    values = loader["parameters"]
    for part in block.split("."):
        values = values[part]
    defaults = _class_defaults(TYPED[block])
    problems = [
        f"{name}: no default in {TYPED[block].__name__}" for name, d in defaults.items() if d is dataclasses.MISSING
    ]
    problems += [f"{name}: not shown in conf/base" for name in defaults if name not in values]
    problems += [
        f"{name}: conf/base {values[name]!r}, class default {jsonable(default)!r}"
        for name, default in defaults.items()
        if name in values
        and default is not dataclasses.MISSING
        and f"{block}.{name}" not in NOT_CLASS_DEFAULTS
        and jsonable(values[name]) != jsonable(default)
    ]
    assert not problems, f"{block}: {problems}"
