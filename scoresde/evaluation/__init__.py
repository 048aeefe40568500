"""Evaluation: sample-quality reports and the feature nets behind FD-digits / FD-fashion."""
