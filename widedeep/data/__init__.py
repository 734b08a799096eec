"""From raw files to batches: one reader per raw format (`readers`), preprocessing (vocabularies,
hashing, crosses, splits), the processed cache, the in-memory and streaming loaders, downloads.
Knows no models, no Lightning and no Hydra."""
