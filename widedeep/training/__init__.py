"""Training with Lightning: the LightningModule, the DataModule, callbacks, checkpoints,
distributed settings and ``train(cfg)``. Knows no raw file formats and no Hydra."""
