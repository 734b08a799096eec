"""The towers and their building blocks: plain `torch.nn.Module`s over a `Batch`'s tensors. No
Lightning, Hydra, polars or files: reusable in any recommender."""
