"""A sweep folder on disk, read without Ray: its layout and record files (layout.py, ledger.py) and the
tidy tables exported from it (tables.py); docs/sweep.md."""
from .layout import SweepMeta, read_sweep_meta
from .tables import export, load_results, load_tables, read_tables

__all__ = ["SweepMeta", "export", "load_results", "load_tables", "read_sweep_meta", "read_tables"]
