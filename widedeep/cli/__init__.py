"""The command lines: thin Hydra and argparse entry points, and the one place that turns a
user's mistake into a one-line message with exit code 2."""
