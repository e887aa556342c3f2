"""Generative augmentation: augmenters that fit on the train split and sample
labelled data, the mixing glue, quality figures, the GDA simulation and the
discriminative-vs-generative classifiers."""
