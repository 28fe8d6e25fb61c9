"""Cost models: analytic size, measured latency, measured or modelled energy."""

from jointopt.cost import energy, latency  # noqa: F401  (registers the built-in models)
from jointopt.cost.registry import (
    CostModel,
    EvalContext,
    cost_models,
    get_cost_model,
    register_cost_model,
)
from jointopt.cost.size import layer_costs, size_costs

__all__ = ["CostModel", "EvalContext", "register_cost_model", "get_cost_model", "cost_models",
           "size_costs", "layer_costs"]
