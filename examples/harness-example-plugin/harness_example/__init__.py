"""Example plugins for harness, one module per plugin (see pyproject.toml):

- ``losses``: the ``poly1`` loss;
- ``metrics``: ``top_k_accuracy`` (labels, probabilities) and
  ``prototype_margin`` (labels, the ``prototypes`` task's distances);
- ``data``: the ``circle_blobs`` dataset source and the ``feature_noise``
  transform;
- ``task``: the ``prototypes`` task and the ``prototype_distances`` kind it
  adds.

Modules import torch and numpy inside functions, so loading the plugins
(every ``harness`` command does) stays fast.
"""
