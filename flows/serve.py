"""Zero-setup scheduling: serve the pipeline's deployments from this process (no work pool, no worker).

    python -m flows.serve        # needs a Prefect server (`prefect server start`) and PREFECT_API_URL

Same schedules as prefect.yaml; use prefect.yaml + a process worker for anything long-lived.
"""

from __future__ import annotations

from prefect import serve

from flows.consumer import evaluate_registry
from flows.pipeline import pipeline


def deployments() -> list:
    return [
        pipeline.to_deployment(name="nightly-retrain", cron="0 2 * * *", parameters={"profile": "default"},
                               concurrency_limit=1),
        pipeline.to_deployment(
            name="weekly-evaluation", cron="0 5 * * 1",
            parameters={"targets": ["evaluate", "compare", "promote"], "profile": "default"}, concurrency_limit=1,
        ),
        evaluate_registry.to_deployment(name="prod-evaluation", cron="0 6 * * *",
                                        parameters={"ref": "prod", "split": "test"},
                                        concurrency_limit=1),
    ]


if __name__ == "__main__":
    serve(*deployments())
