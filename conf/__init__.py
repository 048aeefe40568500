"""The config tree ``scoresde.conf``; importing it registers the structured configs (schemas)."""

from scoresde.training.config import register_configs

register_configs()
