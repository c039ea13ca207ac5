"""Helpers for the SLURM tests: a one-node cluster on loopback and the sbatch-line renderer."""
