"""The pre-training benchmark: one training step of UM-MAE against SimMIM.

- :mod:`.step`: the variants (configs in ``configs/``), the timed step and
  what it measures: time, CPU time, memory, FLOPs, largest batch, compile.
- :mod:`.cli`: ``tools/analysis_tools/benchmark_pretrain.py``: the runs,
  one worker process per variant, the tables.
- :mod:`.gpu`: ``tools/analysis_tools/gpu_check.sh``: the GPU benchmark.
"""
