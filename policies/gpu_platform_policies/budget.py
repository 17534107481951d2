"""Budget rules: the stack's estimated monthly cost at maximum size, held to the stack's budget.

Under a real `pulumi preview` the pack sees only resources, so both figures come from them:

- The budget: the stack config `gpu-platform:budget: {monthlyUsd: N}` (infra/program/settings.py)
  becomes the tag `gpu-platform-budget-monthly-usd` in the cloud provider's default tags (AWS) or
  labels (GCP), as the tier does (infra/program/clusters.py `common_tags`). A provider's inputs are
  among the resources the engine sends, so the pack reads the budget the stack file states, nothing
  configured twice. (A program cannot set stack tags; the providers' defaults are where the pack
  already reads the tier from.)
- The estimate: priced here from the same resources by the one pricing implementation,
  infra/tooling/cost.py, with the one price table, manifests/prices.yaml, exactly as the render
  prices resources.json into cost.json. The pack runs from the repository checkout
  (`pulumi preview --policy-pack policies`, as the workflows do), policies/__main__.py puts the
  repository root on sys.path, and the pack's virtualenv has the module's only dependencies, PyYAML
  and pydantic (policies/requirements.txt). The import is made only when a stack has a budget, so a
  stack without one never needs the checkout.

A stack with a budget whose estimate is incomplete (a machine type the table lacks, a region it
does not cover) fails the mandatory rule: a budget checked against part of the bill would pass
stacks it should stop.
"""

from __future__ import annotations

from typing import Any, Iterator, Optional, Sequence

from pulumi_policy import EnforcementLevel, Severity

from . import config
from .builders import StackResource, stack_policy
from .shapes import BUDGET_TAG, provider_tag

Finding = tuple[Optional[str], str]


def budget_of(resources: Sequence[StackResource]) -> Optional[int]:
    """The stack's monthly budget in USD, from a cloud provider's default tags or labels; None: no budget."""
    for resource in resources:
        for kind, props in ((resource.type, resource.props), (resource.provider_type, resource.provider_props)):
            value = provider_tag(kind, props, BUDGET_TAG)
            if value is not None and value.isdigit():
                return int(value)
    return None


def _records(resources: Sequence[StackResource]) -> list[dict[str, Any]]:
    """The resources in the render's resources.json shape, with each provider once (the engine may send a
    resource's provider only as its `provider`)."""
    records = [{"type": r.type, "name": r.name, "inputs": r.props} for r in resources]
    listed = {r.type for r in resources}
    for resource in resources:
        if resource.provider_type and resource.provider_type not in listed and resource.provider_props is not None:
            records.append({"type": resource.provider_type, "name": "provider", "inputs": resource.provider_props})
            listed.add(resource.provider_type)
    return records


def _estimate(resources: Sequence[StackResource]) -> tuple[Optional[Any], Optional[str]]:
    """(the estimate, None) or (None, why the stack cannot be priced)."""
    try:
        from infra.tooling.cost import PriceTableError, estimate
    except ImportError as error:
        return None, (
            f"the pricing (infra/tooling/cost.py) cannot be imported ({error}): run the pack from the repository "
            "checkout, `pulumi preview --policy-pack policies`, with policies/requirements.txt installed"
        )
    try:
        return estimate(_records(resources)), None
    except PriceTableError as error:
        return None, f"the price table is invalid: {error}"


def _usd(value: float) -> str:
    return f"${value:,.2f}"


def check_cost_within_budget(resources: Sequence[StackResource]) -> Iterator[Finding]:
    budget = budget_of(resources)
    if budget is None:
        return
    priced, why = _estimate(resources)
    if priced is None or priced.unavailable:
        yield None, f"the stack has a budget of {_usd(budget)} a month but no estimate to hold to it: {why or priced.unavailable}."
        return
    if priced.unpriced:
        missing = "; ".join(f"{u.name}: {u.reason}" for u in priced.unpriced)
        yield None, (
            f"the stack has a budget of {_usd(budget)} a month, but part of it has no price, so the estimate "
            f"({_usd(priced.monthly_max)} at maximum size) would understate it: {missing}. Add missing machine types "
            f"to manifests/prices.yaml, or give the pool sizes as numbers."
        )
        return
    if priced.monthly_max > budget:
        yield None, (
            f"the estimated monthly cost with every node pool at its maximum size, {_usd(priced.monthly_max)} "
            f"({priced.cloud} {priced.region} list prices of {priced.prices_as_of}), exceeds the stack's budget of "
            f"{_usd(budget)} (gpu-platform:budget.monthlyUsd) by {_usd(priced.monthly_max - budget)}. Lower a pool's "
            f"maxSize, move batch work to a spot pool, or raise the budget; `infra/run render STACK` lists every item "
            f"(cost.json)."
        )


def check_cost_near_budget(
    resources: Sequence[StackResource], *, warn_from_percent: int = config.WARN_FROM_PERCENT.default
) -> Iterator[Finding]:
    budget = budget_of(resources)
    if budget is None:
        return
    priced, _ = _estimate(resources)
    if priced is None or priced.unavailable or priced.unpriced:
        return  # monthly-cost-within-budget reports it
    share = 100 * priced.monthly_max / budget
    if warn_from_percent <= share <= 100:
        yield None, (
            f"the estimated monthly cost with every node pool at its maximum size, {_usd(priced.monthly_max)}, is "
            f"{share:.0f} % of the stack's budget of {_usd(budget)} (warned from {warn_from_percent} %): the next "
            f"larger pool may not fit."
        )


monthly_cost_within_budget = stack_policy(
    name="monthly-cost-within-budget",
    description=(
        "A stack with a budget (gpu-platform:budget.monthlyUsd) stays within it: the estimated monthly cost with "
        "every node pool at its maximum size, at the list prices of manifests/prices.yaml, is at most the budget."
    ),
    check=check_cost_within_budget,
    severity=Severity.MEDIUM,
)

monthly_cost_near_budget = stack_policy(
    name="monthly-cost-near-budget",
    description=(
        "Advisory: the estimated monthly cost at maximum size is close to the stack's budget (from warnFromPercent, "
        "80 % by default)."
    ),
    check=check_cost_near_budget,
    severity=Severity.LOW,
    options=config.options(config.WARN_FROM_PERCENT),
    enforcement_level=EnforcementLevel.ADVISORY,
)

POLICIES = [monthly_cost_within_budget, monthly_cost_near_budget]
