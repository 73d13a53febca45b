"""What mmumae's scripts in ``tools/`` share: the study runner, the
pre-training benchmark, the data-set and checkpoint converters.

Installed with mmumae (``pip install -e .``); the scripts import it by
these module names.
"""
