"""Rows of the throughput benchmark that run inside the peers' own venv (benchmarks/.work).

Nothing here is imported by widedeep or by its tests; `benchmarks/throughput.py --worker`
imports one of these modules in a subprocess started with the peers' interpreter.
"""
