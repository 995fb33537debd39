"""Adversarial hyperparameter search: Ray Tune trials around one unlearning run, Optuna searching."""
import os

from ..defaults import RAY_ENV

# Set before any module of this package imports Ray: no usage reports, every socket on loopback.
for _key, _value in RAY_ENV.items():
    os.environ.setdefault(_key, _value)
