"""Executors: where runs execute (this process, a pool, Ray, SLURM)."""
