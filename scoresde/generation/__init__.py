"""Generation: the task table, the sharded sample-in-batches loop, the samples file."""
