"""What the tools in ``tools/`` are made of: command line, distributed
launch on a CPU, and running a config with mmumae's runner."""
from .config import (add_common_args, merge_test_args, merge_train_args,
                     parse_tool_args, resolve_amp)
from .dist import has_amp_device, setup_cpu_dist, teardown_dist
from .run import build_runner, error_line, run_tool

__all__ = [
    'add_common_args', 'parse_tool_args', 'merge_train_args',
    'merge_test_args', 'resolve_amp', 'has_amp_device', 'setup_cpu_dist',
    'teardown_dist', 'build_runner', 'run_tool', 'error_line'
]
