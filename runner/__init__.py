"""The study runner: a study file's grid expanded into cells, run locally or on SLURM, tracked by its run files."""
