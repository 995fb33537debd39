"""The judgement over a sweep's tables: the runs a verdict pools (pool.py) and the three-way verdict
per method with Holm's correction (judge.py); docs/verdict.md."""
