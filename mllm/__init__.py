"""mllm: the library behind mllm-workflow (model, data, training, evaluation, demo world, report)."""

import gc
import os

__version__ = "0.1.0"

# Set by the workflow (mllm.runtime.mark_started_jobs) for the processes of its jobs. A job
# imports torch and transformers, about a million objects, before its work begins, and the cyclic
# garbage collector scans them over and over meanwhile: ~2 s of a job's ~7 s start on a 2-core
# machine. In such a process the collector is paused from here until mllm.runtime.start_job,
# which every job calls once its imports are done (tests/test_runtime.py).
JOB_ENVIRONMENT_VARIABLE = "MLLM_WORKFLOW_JOB"
if os.environ.get(JOB_ENVIRONMENT_VARIABLE) == "1":
    gc.disable()
