"""Training: the score-model trainer, EMA, and the noisy-classifier trainer."""
