"""Meta-classifiers: the boosted random forest (BRF) over segment features and the image classifier g(I)."""
