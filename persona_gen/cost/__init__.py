"""Plan a run's cost before any GPU hour is spent: calls, tokens, GPU-hours, wall time, bytes."""

from persona_gen.cost.estimate import (
    Cluster,
    CostPlan,
    StagePlan,
    TokenAssumptions,
    Workload,
    parse_cluster,
    plan_cost,
    stage_volumes,
    storage_volume,
    workload_from_config,
)
from persona_gen.cost.tables import ThroughputTable, load_table

__all__ = [
    "Cluster",
    "CostPlan",
    "StagePlan",
    "ThroughputTable",
    "TokenAssumptions",
    "Workload",
    "load_table",
    "parse_cluster",
    "plan_cost",
    "stage_volumes",
    "storage_volume",
    "workload_from_config",
]
