"""Scenario scripts: the schema and loader (:mod:`harness.scenarios.model`, pure) and the
runner that plays a script on a world (:mod:`harness.scenarios.runner`)."""

from harness.scenarios.model import (
    MOMENTS,
    Expectation,
    Known,
    MomentTracker,
    Scenario,
    ScenarioError,
    load,
    loads,
    script_paths,
)

__all__ = [
    "MOMENTS",
    "Expectation",
    "Known",
    "MomentTracker",
    "Scenario",
    "ScenarioError",
    "load",
    "loads",
    "script_paths",
]
