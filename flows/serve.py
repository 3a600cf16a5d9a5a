"""Zero-setup scheduling: serve the pipeline's deployments from this process (no work pool, no worker).

    python -m flows.serve        # needs a Prefect server (`prefect server start`) and PREFECT_API_URL

Same schedules as prefect.yaml; use prefect.yaml + a process worker for anything long-lived.
"""

from __future__ import annotations

from prefect import serve

from flows.consumer import evaluate_registry
from flows.pipeline import pipeline

SCHEDULES = (("nightly-retrain", "0 2 * * *"), ("weekly-evaluation", "0 5 * * 1"), ("prod-evaluation", "0 6 * * *"))


def deployments() -> list:
    cron = dict(SCHEDULES)
    return [
        pipeline.to_deployment(name="nightly-retrain", cron=cron["nightly-retrain"], parameters={"profile": "default"},
                               concurrency_limit=1),
        pipeline.to_deployment(
            name="weekly-evaluation", cron=cron["weekly-evaluation"],
            parameters={"targets": ["evaluate", "compare", "promote"], "profile": "default"}, concurrency_limit=1,
        ),
        evaluate_registry.to_deployment(name="prod-evaluation", cron=cron["prod-evaluation"],
                                        parameters={"ref": "prod", "split": "test"},
                                        concurrency_limit=1),
    ]


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m flows.serve", description=__doc__.splitlines()[0],
                                     epilog="Serves: " + "; ".join(f"{name} ({cron})" for name, cron in SCHEDULES)
                                     + ". Runs until interrupted.")
    parser.parse_args(argv)
    serve(*deployments())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
