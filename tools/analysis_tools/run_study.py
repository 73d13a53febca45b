"""Run a study: a grid of pre-train -> evaluate experiments, each through
mmengine's Runner in its own process and work dir, then tables and a plot
(:mod:`mmumae_tools.study`; a study config's keys:
``configs/studies/elpv/README.md``). Resumable: a run whose folder holds
``result.json`` is not repeated, a killed run continues from its newest
checkpoint; each run's log is ``<run>/run.log``."""
import argparse
import sys

from mmumae_tools.study.runner import run_study

if __name__ == '__main__':
    p = argparse.ArgumentParser(
        description='Run a pre-train -> evaluate study (resumable) and '
        'write results.md / results.csv / results.png.')
    p.add_argument('study', help='study config, e.g. configs/studies/elpv/'
                   'study_main_swin-mini.py')
    p.add_argument('--data-root', help='ImageNet-layout folder with train/, '
                   'val/ and test/ (default: the study\'s data_root)')
    p.add_argument('--work-dir', help='results folder (default: the '
                   'study\'s work_dir); runs go to <work-dir>/runs unless '
                   'the study names runs_dir')
    p.add_argument('--seeds', type=int, nargs='+',
                   help='override the study\'s seeds')
    p.add_argument('--dry-run', action='store_true',
                   help='list the runs and whether they are done')
    p.add_argument('--report-only', action='store_true',
                   help='write the tables from the finished runs only')
    p.add_argument('--keep-going', action='store_true',
                   help='go on with the other runs when one fails')
    sys.exit(run_study(p.parse_args()))
