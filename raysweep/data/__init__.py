"""Dataset registry. A loader: (data_dir: str | None, val_size: int, seed: int, **params) -> Dataset;
`params` are the scenario's `dataset_params` (a loader refuses those it does not take)."""
from ..registry import Registry
from .base import Dataset, Split

DATASETS: Registry = Registry("dataset", __name__)  # every module here that registers a loader


def load_dataset(name: str, data_dir: str | None = None, val_size: int = 1000, seed: int = 0,
                 params: dict | None = None) -> Dataset:
    return DATASETS.get(name, "dataset")(data_dir=data_dir, val_size=val_size, seed=seed, **(params or {}))


__all__ = ["DATASETS", "Dataset", "Split", "load_dataset"]
