"""Interoperability with other codebases' files: the Score SDE release's checkpoints.

``load_score_sde(checkpoint, config)`` turns a checkpoint of yang-song/score_sde_pytorch (e.g. the
paper's ``checkpoint_26.pth`` of VE NCSN++ cont.) into a scoresde :class:`~scoresde.io.runs.Run`;
``python -m scoresde.convert`` writes it as a run directory.
"""

from scoresde.interop.configs import RELEASE_CONFIGS, net_kwargs, release_config, scoresde_config
from scoresde.interop.score_sde import (
    Converted,
    convert_score_sde,
    load_score_sde,
    release_key_map,
    write_run,
)

__all__ = [
    "RELEASE_CONFIGS",
    "Converted",
    "convert_score_sde",
    "load_score_sde",
    "net_kwargs",
    "release_config",
    "release_key_map",
    "scoresde_config",
    "write_run",
]
