"""Adversarial hyperparameter search: Ray Tune trials around one unlearning run, Optuna searching."""
import os

# Set before any module of this package imports Ray: no usage reports, every socket on loopback.
RAY_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
for _key, _value in RAY_ENV.items():
    os.environ.setdefault(_key, _value)
