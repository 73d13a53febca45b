"""One-line errors for names that mmumae renamed or removed."""
from typing import Dict

from mmumae.registry import MODELS


def refuse_unknown_args(owner: str, kwargs: dict,
                        renamed: Dict[str, str]) -> None:
    """Raise a one-line ``TypeError`` for the first unknown keyword argument.

    Args:
        owner (str): Class name for the message.
        kwargs (dict): The keyword arguments the class did not take.
        renamed (dict): Old argument name -> what to do instead.
    """
    for key in kwargs:
        fix = renamed.get(key, 'it is not an argument of this class')
        raise TypeError(f'{owner}: unexpected argument {key!r}: {fix}.')


def register_renamed_type(old: str, new: str) -> None:
    """Keep ``type=old`` in configs failing with one line naming ``new``."""

    def renamed(**kwargs):
        raise TypeError(f"type='{old}' was renamed to '{new}' (same arguments "
                        f"and weights); set type='{new}'.")

    MODELS.register_module(name=old, module=renamed)
