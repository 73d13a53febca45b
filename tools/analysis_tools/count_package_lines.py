"""Lines of mmumae's packages and of each script in ``tools/``::

    python tools/analysis_tools/count_package_lines.py
"""
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def lines(paths) -> int:
    """Physical lines of these files, docstrings and comments included."""
    return sum(len(p.read_text(encoding='utf-8').splitlines()) for p in paths)


if __name__ == '__main__':
    for package in ('mmumae', 'runsafe', 'mmumae_tools'):
        print(f'{lines((REPO / package).rglob("*.py")):6d}  {package}/')
    for script in sorted((REPO / 'tools').rglob('*.[ps][yh]')):
        print(f'{lines([script]):6d}  {script.relative_to(REPO)}')
