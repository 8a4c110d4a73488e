"""The bodies of the commands other than `run` that work on a recipe or a run directory."""
