"""A cell: one host x image x scenario, run (runner.py), judged (verdict.py), cached (cache.py)."""
