"""Benchmark one pre-training step: UM-MAE against SimMIM (and MAE on ViT).

Step time (min/median), process CPU time, peak memory, FLOPs, and on
request the largest batch, ``torch.compile`` (graph breaks), AMP and a
profile; see docs/benchmark.md and ``--help``. E.g.::

    python tools/analysis_tools/benchmark_pretrain.py --model swin-t pvt-s \\
        --batch-size 8 --steps 5 --warmup 2 --rounds 2
"""
from mmumae_tools.benchmark.cli import main

if __name__ == '__main__':
    main()
