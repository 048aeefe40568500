"""Input and output: atomic writes, checkpoints (``weights_only``), run loading, loggers, plots."""
