"""One body per stage kind. A body does the work through a library and returns a StageResult;
it never marks the stage itself (workers.runner does, atomically with the rows it records)."""

from workers.stages.benchmark import benchmark
from workers.stages.compress import compress_stage
from workers.stages.fetch import fetch
from workers.stages.publish import publish
from workers.stages.validate import baseline, validate

BODIES = {
    "fetch": fetch,
    "baseline": baseline,
    "compress": compress_stage,
    "validate": validate,
    "benchmark": benchmark,
    "publish": publish,
}
