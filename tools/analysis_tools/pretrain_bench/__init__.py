"""Parts of ``tools/analysis_tools/benchmark_pretrain.py``.

- :mod:`.variants`: which config each benchmarked variant is built from,
  and how ``--cfg-options`` / ``--img-size`` change it.
- :mod:`.step`: model, optimizer wrapper and batches from a config; the
  timed training step.
- :mod:`.flops`: forward FLOPs per image.
- :mod:`.report`: machine description, ratios, targets, table and plot.
"""
