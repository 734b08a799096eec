"""The joint-vs-ensemble harness: the plan of runs, ensembles from saved predictions, the
results table, its statistics and the report."""
