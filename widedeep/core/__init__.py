"""The layer below all others: the feature contract that data and models share (the `Schema`
of fields and the `Batch` of tensors), atomic file writes and the allocator setting. Plain torch
and the standard library only."""
