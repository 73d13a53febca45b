"""The pre-training benchmark (docs/benchmark.md): :mod:`.step` builds the
variants and measures a training step, :mod:`.cli` is the command line of
``tools/analysis_tools/benchmark_pretrain.py``, :mod:`.gpu` the GPU
benchmark of ``tools/analysis_tools/gpu_check.sh``."""
