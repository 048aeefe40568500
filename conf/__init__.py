"""Hydra configs of the command lines, shipped as ``scoresde.conf``.

Importing it registers the structured configs (types and defaults) that the YAML files select.
"""

from scoresde.cli.configs import register
from scoresde.training.config import register_configs

register()
register_configs()
