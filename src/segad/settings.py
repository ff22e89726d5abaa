"""Kedro project settings for segad.

See https://docs.kedro.org/en/stable/kedro_project_setup/settings.html.
"""

from kedro.config import OmegaConfigLoader

from segad.hooks import RunConfigHooks, StopHooks, UpstreamCheckHooks
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
# terminal and every run ends with a summary block (segad.log_hooks, docs/operations.md "Logs").
HOOKS = (RunConfigHooks(), UpstreamCheckHooks(), SchemaHooks(), _TRACKING, StopHooks(), LogHooks(tracking=_TRACKING))

CONFIG_LOADER_CLASS = OmegaConfigLoader
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
