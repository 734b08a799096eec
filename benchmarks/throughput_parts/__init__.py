"""The modules of benchmarks/throughput.py, which documents the benchmark and runs it.

- spec: the model every system trains, the table's rows, the workers' settings
- data: the generated Criteo-shaped data
- measure: timing inside a worker (steps, inference passes, peak RSS)
- widedeep_rows, handwritten_rows, peer_rows: one system's row each (peer_rows also installs
  the peers' venv)
- worker: one row in this process (`throughput.py --worker`)
- rounds: the parent running the rows' processes, one after the other or interleaved in turns
  (SIGSTOP/SIGCONT), and combining the rounds
- machine: the matmul ceiling, the machine's load, the CPU's name
- report: ratios, targets, the markdown table, the result files

Like the script, these modules import only the standard library and numpy at the top: they run
in both venvs (widedeep's and the peers'), and each row imports its own framework.
"""
