"""A sweep folder on disk, read without Ray: its layout and record files (layout.py, ledger.py) and the
tidy tables exported from it (tables.py); docs/sweep.md."""
