"""The attacker's side: search the poison against the tuned defenders (docs/attack_search.md).

    raysweep attack-search [--scenario tiny] --mode worst|boundary [--space eps2=0.01:1:log,k=32:1024] ...

An outer search over the attack's own searchable parameters (`Attack.searchable`); each outer point
is a scenario prepared once (content-addressed), the full inner defender search (`run_sweep`: every
method's Optuna search and ASHA on one Tuner) and the report's verdict (`verdict.judge`). plan.py
checks the request and proposes points, run.py is the resumable outer loop, table.py and figure.py
write the tables, the plane figure and the report's section. No argparse here (cli/attack_search.py).
"""

PLAN_FILE = "attack_search.json"  # what a search was asked: its presence marks an attack search's folder
