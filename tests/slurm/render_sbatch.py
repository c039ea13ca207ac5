"""Print the sbatch command line the SLURM executor plugin would submit for each job of a dry-run.

    python -m tests.slurm.render_sbatch OUT.jsonl <snakemake arguments, e.g. --profile slurm -n>

Runs Snakemake's own CLI (so the profile is parsed exactly as `snakemake --profile slurm` parses
it: default-resources, set-resources, human-readable runtimes), but while the dry-run "executes"
each job, the job is also handed to the plugin's own submit-string builder
(`get_submit_command` + `set_gres_string`, after `validate_slurm_extra`), the code `sbatch` lines
come from. One JSON object per job is appended to OUT.jsonl. No cluster, no sbatch.

Not rendered: the account and partition checks against a live cluster (sacctmgr, sinfo) and
executor flags (--slurm-requeue, --slurm-qos), which this repository's profile does not set.
"""

from __future__ import annotations

import json
import shlex
import sys


def render(job) -> str:
    from snakemake_executor_plugin_slurm.submit_string import get_submit_command
    from snakemake_executor_plugin_slurm.utils import set_gres_string
    from snakemake_executor_plugin_slurm.validation import validate_slurm_extra

    validate_slurm_extra(job)
    account = job.resources.get("slurm_account")
    partition = job.resources.get("slurm_partition")
    params = {
        "run_uuid": "RUN_UUID",
        "slurm_logfile": f"logs/slurm/rule_{job.name}/%j.log",
        "comment_str": f"rule_{job.name}",
        "account": f" -A {shlex.quote(str(account))}" if account else "",
        "partition": f" -p {shlex.quote(str(partition))}" if partition else "",
        "workdir": "WORKDIR",
    }
    return get_submit_command(job, params) + set_gres_string(job)


def main(argv: list[str]) -> None:
    out_path, snakemake_args = argv[0], argv[1:]
    from snakemake import cli
    from snakemake.executors import dryrun

    original_run_job = dryrun.Executor.run_job

    def run_job(self, job):
        # localrules run on the submitting machine under `--executor slurm`, never through sbatch
        record = {
            "rule": job.name,
            "local": job.name in getattr(self.workflow, "_localrules", ()),
            "threads": job.threads,
        }
        try:
            record["sbatch"] = render(job)
        except Exception as error:  # reported to the test, which fails with it
            record["error"] = f"{type(error).__name__}: {error}"
        with open(out_path, "a") as out:
            out.write(json.dumps(record) + "\n")
        return original_run_job(self, job)

    dryrun.Executor.run_job = run_job
    cli.main(snakemake_args)


if __name__ == "__main__":
    main(sys.argv[1:])
