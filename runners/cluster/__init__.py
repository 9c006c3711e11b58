"""Starting queue workers through a cluster scheduler (Slurm job arrays)."""

from runners.cluster.slurm import ArrayJob, SlurmError, script, submit

__all__ = ["ArrayJob", "SlurmError", "script", "submit"]
