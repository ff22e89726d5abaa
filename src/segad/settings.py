"""Kedro project settings for segad.

See https://docs.kedro.org/en/stable/kedro_project_setup/settings.html.
"""

from kedro.config import OmegaConfigLoader

from segad.hooks import RunConfigHooks, UpstreamCheckHooks
from segad.schema_hooks import SchemaHooks
from segad.tracking_hooks import TrackingHooks

# A stage run alone stops before running when an upstream output is missing (segad.hooks); every
# table a node loads or saves is checked against its schema (segad.schema_hooks, docs/schemas.md);
# a tracked run is logged to MLflow (segad.tracking_hooks, conf/base/mlflow.yml).
HOOKS = (RunConfigHooks(), UpstreamCheckHooks(), SchemaHooks(), TrackingHooks())

CONFIG_LOADER_CLASS = OmegaConfigLoader
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    "config_patterns": {"mlflow": ["mlflow*", "mlflow*/**"]},
}
