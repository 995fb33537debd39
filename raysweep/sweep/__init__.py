"""Adversarial hyperparameter search: Ray Tune trials around one unlearning run, Optuna searching."""
