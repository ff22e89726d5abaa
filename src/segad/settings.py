"""Kedro project settings for segad.

See https://docs.kedro.org/en/stable/kedro_project_setup/settings.html.
"""

from omegaconf import OmegaConf

from segad.config_loader import SegadConfigLoader, dataset_id_resolver
from segad.hooks import RunConfigHooks, StopHooks, UpstreamCheckHooks
from segad.lock_hooks import RunLockHooks
from segad.log_hooks import LogHooks
from segad.logs import silence_known_warnings
from segad.schema_hooks import SchemaHooks
from segad.tracking_hooks import TrackingHooks

# Harmless messages other libraries repeat (named in segad.logs.KNOWN_NOISE / KNOWN_WARNINGS) are
# dropped before Kedro builds its config loader (OmegaConf's resolver deprecation comes from there).
silence_known_warnings()
_TRACKING = TrackingHooks()

# A stage run alone stops before running when an upstream output is missing (segad.hooks); every
# table a node loads or saves is checked against its schema (segad.schema_hooks, docs/schemas.md);
# a tracked run is logged to MLflow (segad.tracking_hooks, conf/base/mlflow.yml); SIGINT and SIGTERM
# stop a run within seconds in any stage (segad.hooks.StopHooks, segad.stopping); the log is plain off a
# terminal and every run ends with a summary block (segad.log_hooks, docs/operations.md "Logs"); a run holds its data folder's lock
# from before the first hook to after the last (segad.lock_hooks).
HOOKS = (
    RunConfigHooks(),
    UpstreamCheckHooks(),
    SchemaHooks(),
    _TRACKING,
    StopHooks(),
    LogHooks(tracking=_TRACKING),
    RunLockHooks(),
)

# OmegaConfigLoader whose catalog's ${dataset_id:} is the id of its own dataset parameters (below)
CONFIG_LOADER_CLASS = SegadConfigLoader
# Parameters merge "soft" (key by key) over conf/base: Kedro's default replaces a whole top-level
# block of base by an environment's, and `--params` values land in the environment's layer, so
# with any parameters file in conf/local or --env, `--params classifier.epochs=3` used to replace
# the whole `classifier` block by {epochs: 3} and silently switch the classifier off (its typed
# default). tests/test_config.py checks the merge.
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    "merge_strategy": {"parameters": "soft"},
    "config_patterns": {"mlflow": ["mlflow*", "mlflow*/**"]},
}

# ${dataset_id:} in catalog paths: the dataset id (dataset.name, or the layout and a hash of the resolved
# root) of the same parameters the nodes get, set by SegadConfigLoader when it reads the catalog
# (segad.config_loader; docs/reliability.md, "Dataset identity"). Catalog files only. Registered
# here with OmegaConf's own call rather than CONFIG_LOADER_ARGS["custom_resolvers"], through which Kedro 1.7
# uses OmegaConf's deprecated register_new_resolver and warns on every command.
if not OmegaConf.has_resolver("dataset_id"):
    OmegaConf.register_resolver("dataset_id", dataset_id_resolver)
