"""The batch job catalog: manifests/batch/<name>.yaml, one offline inference job each, read like the model catalog.

A job names a catalog model (manifests/models/) that serves through vLLM, where its input shards lie in the
model store and where the results go. A stack runs a job by listing it under `gpu-platform:batchJobs`
(with its tenant where the stack has tenants); components/batch_jobs.py renders it as a queued, suspended,
Indexed batch/v1 Job. manifests/batch/README.md documents the format.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from pydantic import Field

from infra.program.model_catalog import _PATH, _Entry, load_entries

BATCH_DIR = Path(__file__).resolve().parents[2] / "manifests" / "batch"
MAX_BATCH_FILE_BYTES = 16 * 1024
MAX_BATCH_JOBS = 100
# Shards of one job: each an index of the Indexed Job, so a bound on the Job's completions too.
MAX_SHARDS = 10_000


class BatchJob(_Entry):
    name: str = Field(pattern=r"^[a-z0-9]([-a-z0-9]{0,38}[a-z0-9])?$", description="The file name without .yaml.")
    description: str = Field(min_length=1, max_length=500, description="What the job does, in one sentence.")
    model: str = Field(description="A catalog model (manifests/models/) served through vLLM (`--backend=vllm`).")
    input_prefix: str = Field(
        pattern=_PATH,
        description="Prefix in the `models` bucket holding the shards `shard-00000.jsonl` ... (OpenAI batch "
        "file format: one request per line).",
    )
    output_prefix: str = Field(pattern=_PATH, description="Prefix the results go to, one `shard-NNNNN.jsonl` per input shard.")
    shards: int = Field(ge=1, le=MAX_SHARDS, description="Input shards: one Job index each.")
    parallelism: int = Field(default=1, ge=1, le=100, description="Shards processed at once (pods, one GPU each).")
    retries_per_shard: int = Field(
        default=3, ge=0, le=20, description="Failures of one shard before that shard counts as failed (backoffLimitPerIndex)."
    )
    max_failed_shards: Optional[int] = Field(
        default=None, ge=0, description="Failed shards before the whole job stops (maxFailedIndexes); unset: never."
    )


class BatchJobOverride(_Entry):
    """What one stack says about a batch job of the catalog."""

    tenant: Optional[str] = Field(default=None, description="The tenant running it; required where the stack has tenants.")
    parallelism: Optional[int] = Field(default=None, ge=1, le=100, description="Overrides the job's parallelism.")


def load_batch_catalog(directory: Path = BATCH_DIR) -> dict[str, BatchJob]:
    """Every batch job in `directory`, or CatalogError listing every problem of every file."""
    return load_entries(directory, BatchJob, MAX_BATCH_JOBS, MAX_BATCH_FILE_BYTES)
