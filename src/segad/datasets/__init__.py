"""Custom Kedro datasets of the project (map store, XGBoost model, ...)."""
