"""Prepare a scenario once: poison the data, train θ_initial and θ_retrain, evaluate both, store the
content-addressed artifact (scenario.py, train.py); `--seeds N` spreads over scenario seeds (spread.py)."""
