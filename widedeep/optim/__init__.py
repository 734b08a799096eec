"""Optimizers: FTRL-Proximal for dense and sparse gradients, and the per-tower optimizer and
scheduler factories. Plain torch."""
