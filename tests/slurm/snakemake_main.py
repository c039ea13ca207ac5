"""``python -m tests.slurm.snakemake_main ARGS``: Snakemake's command line, with the SLURM
executor plugin's status-check back-off capped at the profile's ``seconds-between-status-checks``.

After every status check that finds no job finished, the plugin waits 10 s longer (up to 180 s),
which spares a real cluster's controller. On the one-node test cluster, whose jobs take seconds,
it idles the run for up to tens of seconds after each job ends (measured: 3-38 s per finished
job). The cap changes only when the plugin looks; what it submits and how it reads the job
states are the plugin's own.
"""

from __future__ import annotations

from snakemake.cli import main
from snakemake_executor_plugin_slurm import Executor

_check_active_jobs = Executor.check_active_jobs


async def check_active_jobs_capped(self, active_jobs):
    async for job in _check_active_jobs(self, active_jobs):
        yield job
    self.next_seconds_between_status_checks = min(
        self.next_seconds_between_status_checks,
        self.workflow.remote_execution_settings.seconds_between_status_checks,
    )


Executor.check_active_jobs = check_active_jobs_capped

if __name__ == "__main__":
    main()
