"""Images in: dataset loaders and their decoded-array cache, batched augmentation, encoded image files (torch-free)."""
