"""Statistics the attacks' verdict tests and the report share: exact tests, TOST, intervals (exact.py),
and the `Evidence` a test returns with the helpers that pool runs into it (evidence.py)."""
