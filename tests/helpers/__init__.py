"""Helpers shared by the test modules: fixtures, tiny models, recipe runners, the fault ledger and the Slurm cluster."""
