"""Using a trained run: scoring raw rows with its preprocessing, and `torch.export`."""
