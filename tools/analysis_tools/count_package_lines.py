"""Count the lines of ``mmumae/``: the method against the run machinery.

::

    python tools/analysis_tools/count_package_lines.py [--by-file]

The method is the model code (``mmumae/models/``), the mask transforms
(``mmumae/datasets/transforms/``) and the figures
(``mmumae/visualization/``, ``engine/hooks/reconstruction_hook.py``);
everything else in the package is run machinery (hooks, checkpoint
reading, data checks, the tools' command line). Lines are physical lines of
the ``.py`` files, docstrings and comments included.
"""
import argparse
from pathlib import Path
from typing import Dict

PACKAGE = Path(__file__).resolve().parents[2] / 'mmumae'
METHOD = ('models/', 'datasets/transforms/', 'visualization/',
          'engine/hooks/reconstruction_hook.py')


def count_lines(package: Path = PACKAGE) -> Dict[str, Dict[str, int]]:
    """Lines per file, split into ``'method'`` and ``'run'``."""
    parts: Dict[str, Dict[str, int]] = {'method': {}, 'run': {}}
    for path in sorted(package.rglob('*.py')):
        name = path.relative_to(package).as_posix()
        kind = 'method' if name.startswith(METHOD) else 'run'
        with open(path, encoding='utf-8') as f:
            parts[kind][name] = sum(1 for _ in f)
    return parts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--by-file', action='store_true',
                        help='also list the run machinery file by file')
    args = parser.parse_args()
    parts = count_lines()
    method, run = (sum(parts[k].values()) for k in ('method', 'run'))
    if args.by_file:
        for name, lines in sorted(parts['run'].items(), key=lambda x: -x[1]):
            print(f'{lines:6d}  {name}')
    print(f'method {method} lines, run machinery {run} lines: '
          f'{100 * run / (method + run):.1f}% of {method + run}')


if __name__ == '__main__':
    main()
