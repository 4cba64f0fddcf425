"""Data: the charset's images, synthesis, layouts and splits, preprocessing, augmentation, segmentation."""
