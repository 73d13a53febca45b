"""What the tools in ``tools/`` are made of: command line, distributed
launch on a CPU, and running a config with mmumae's strict runner."""
from .config import (add_common_args, merge_test_args, merge_train_args,
                     parse_tool_args, resolve_amp)
from .dist import (check_launcher, configure_cpu_dist, has_amp_device,
                   init_cpu_dist, launcher_env, setup_cpu_dist, teardown_dist,
                   uses_cpu_dist)
from .run import build_runner, run_tool

__all__ = [
    'add_common_args', 'parse_tool_args', 'merge_train_args',
    'merge_test_args', 'resolve_amp', 'has_amp_device', 'check_launcher',
    'uses_cpu_dist', 'launcher_env', 'configure_cpu_dist', 'init_cpu_dist',
    'setup_cpu_dist', 'teardown_dist', 'build_runner', 'run_tool'
]
