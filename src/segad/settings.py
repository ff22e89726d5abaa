"""Kedro project settings for segad.

See https://docs.kedro.org/en/stable/kedro_project_setup/settings.html.
"""

from kedro.config import OmegaConfigLoader

CONFIG_LOADER_CLASS = OmegaConfigLoader
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
}

from segad.hooks import UpstreamCheckHooks  # noqa: E402

HOOKS = (UpstreamCheckHooks(),)
