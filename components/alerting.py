"""Alert rules: the rule files operators edit in manifests/alerts/, as PrometheusRules per environment.

Each file in manifests/alerts/ is a Prometheus rule file (`groups:` of alerting `rules:`) with five keys
Prometheus does not have, resolved here for one tier (manifests/alerts/README.md shows an example):

- `threshold`: the number that replaces `$threshold` in `expr`;
- `for` and `severity` (`info`, `warning`, `critical`);
- `tiers` (optional): the tiers the rule exists in, e.g. `[prod]` for a rule about prod's money; every tier
  unless set.
- `requires`: what an environment must run for the rule to mean anything: `gpu` (the cluster has GPU
  pools) or the add-ons `istio`, `knative`, `kserve`, `flagger`, `opencost` (cost monitoring) and `kueue`
  (the batch queue). A rule whose requirement is missing is
  left out, an emptied group is dropped and an emptied file renders no PrometheusRule, so the kind stack
  (no GPU pools) carries no GPU alert that could never fire.

`threshold`, `for` and `severity` are one value for every tier, or a map with exactly `dev`, `staging`
and `prod`, so the file shows side by side what each tier promises. A malformed file is reported at
once, every problem naming the file, the rule and the key.

Each file becomes one `PrometheusRule` (monitoring.coreos.com/v1; its CRD comes with kube-prometheus-stack
88.5.3 and is identical to ../shared/upstream/prometheus-operator/v0.93.0/crds, per
../shared/upstream/kube-prometheus-stack/88.5.3/facts/operator-crd-match.json) in the monitoring
namespace. Prometheus selects rules from every namespace with no label selector (components/observability.py),
so the labels here only say what the rules are.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional

import pulumi
import pulumi_kubernetes as k8s
import yaml

from components.charts import CHART_PINS
from components.custom_resource import custom_resource

RULES_DIR = Path(__file__).resolve().parent.parent / "manifests" / "alerts"
TIERS = ("dev", "staging", "prod")
# Alertmanager routes on these; kube-prometheus-stack's own rules use the same three. `critical` pages
# whoever is on call, so only prod uses it (tests/test_alerts.py holds every tier to that).
SEVERITIES = ("info", "warning", "critical")
CAPABILITIES = ("gpu", "istio", "knative", "kserve", "flagger", "karpenter", "opencost", "kueue")
REQUIRED_ANNOTATIONS = ("summary", "description", "runbook")
THRESHOLD_PLACEHOLDER = "$threshold"

API_VERSION = "monitoring.coreos.com/v1"
KIND = "PrometheusRule"
NAMESPACE = CHART_PINS["kube-prometheus-stack"].namespace
NAME_PREFIX = "gpu-platform"
LABELS: Mapping[str, str] = {
    "app.kubernetes.io/name": "gpu-platform-alerts",
    "app.kubernetes.io/part-of": "gpu-platform",
    "app.kubernetes.io/managed-by": "pulumi",
}

# Prometheus' duration syntax, as the PrometheusRule CRD's pattern for `for` accepts it.
_DURATION = re.compile(r"^(0|(\d+y)?(\d+w)?(\d+d)?(\d+h)?(\d+m)?(\d+s)?(\d+ms)?)$")
_ALERT_NAME = re.compile(r"^[A-Z][A-Za-z0-9]*$")
_GROUP_NAME = re.compile(r"^[a-z][-a-z0-9]*$")
_RULE_KEYS = {"alert", "expr", "threshold", "for", "severity", "requires", "tiers", "labels", "annotations"}
_GROUP_KEYS = {"name", "interval", "rules"}


class AlertRulesError(ValueError):
    """Rule files that cannot be rendered; `problems` holds one line per bad key, each naming the file."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


@dataclass(frozen=True)
class AlertRule:
    alert: str
    expr: str  # `$threshold` still unresolved
    for_: Mapping[str, str]  # tier -> duration
    severity: Mapping[str, str]  # tier -> severity
    threshold: Optional[Mapping[str, float]] = None  # tier -> number
    requires: frozenset[str] = frozenset()
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    # The tiers the rule exists in; every tier unless the file says `tiers`.
    tiers: frozenset[str] = frozenset(TIERS)

    def applies(self, capabilities: Iterable[str], tier: Optional[str] = None) -> bool:
        return self.requires <= frozenset(capabilities) and (tier is None or tier in self.tiers)

    def expression(self, tier: str) -> str:
        if self.threshold is None:
            return self.expr
        return self.expr.replace(THRESHOLD_PLACEHOLDER, format_number(self.threshold[tier]))

    def resolved(self, tier: str) -> dict[str, Any]:
        """The rule as Prometheus reads it, for `tier`."""
        return {
            "alert": self.alert,
            "expr": self.expression(tier),
            "for": self.for_[tier],
            "labels": {**self.labels, "severity": self.severity[tier]},
            "annotations": dict(self.annotations),
        }


@dataclass(frozen=True)
class RuleGroup:
    name: str
    rules: tuple[AlertRule, ...]
    interval: Optional[str] = None


@dataclass(frozen=True)
class RuleFile:
    """One file of manifests/alerts/; `name` is the file name without `.yaml`."""

    name: str
    groups: tuple[RuleGroup, ...]

    @property
    def rules(self) -> tuple[AlertRule, ...]:
        return tuple(rule for group in self.groups for rule in group.rules)


def format_number(value: float) -> str:
    """0.9 -> "0.9", 500 -> "500": how a threshold is written into PromQL."""
    return format(value, "g")


# --- reading the files -------------------------------------------------------------------------------


def load_rule_files(directory: Path = RULES_DIR) -> tuple[RuleFile, ...]:
    """Every `*.yaml` in `directory`, by file name. Raises AlertRulesError listing every problem."""
    problems: list[str] = []
    files = []
    seen: dict[str, str] = {}
    for path in sorted(directory.glob("*.yaml")):
        label = _display(path)
        try:
            document = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            problems.append(f"{label}: not valid YAML ({exc})")
            continue
        rule_file = _parse_file(path.stem, document, label, problems)
        for rule in rule_file.rules:
            if rule.alert in seen:
                problems.append(f"{label}: alert {rule.alert} is already defined in {seen[rule.alert]}")
            seen.setdefault(rule.alert, label)
        files.append(rule_file)
    if problems:
        raise AlertRulesError(problems)
    return tuple(files)


def _display(path: Path) -> str:
    try:
        return str(path.relative_to(RULES_DIR.parent.parent))
    except ValueError:
        return str(path)


def _parse_file(name: str, document: Any, label: str, problems: list[str]) -> RuleFile:
    if not isinstance(document, Mapping) or set(document) != {"groups"}:
        problems.append(f"{label}: the file must have exactly one top-level key, `groups` (a Prometheus rule file)")
        return RuleFile(name, ())
    raw_groups = document["groups"]
    if not isinstance(raw_groups, list) or not raw_groups:
        problems.append(f"{label}: groups: a non-empty list of rule groups")
        return RuleFile(name, ())
    groups = []
    for g, raw in enumerate(raw_groups):
        where = f"{label}: groups[{g}]"
        if not isinstance(raw, Mapping):
            problems.append(f"{where}: a mapping with name and rules")
            continue
        for key in sorted(set(raw) - _GROUP_KEYS):
            problems.append(f"{where}.{key}: unknown key; allowed: {', '.join(sorted(_GROUP_KEYS))}")
        group_name = raw.get("name")
        if not isinstance(group_name, str) or not _GROUP_NAME.match(group_name):
            problems.append(f"{where}.name: lowercase letters, digits and '-', got {group_name!r}")
        interval = raw.get("interval")
        if interval is not None and not (isinstance(interval, str) and _DURATION.match(interval)):
            problems.append(f"{where}.interval: a Prometheus duration such as 1m, got {interval!r}")
        raw_rules = raw.get("rules")
        if not isinstance(raw_rules, list) or not raw_rules:
            problems.append(f"{where}.rules: a non-empty list of alerting rules")
            continue
        rules = [_parse_rule(rule, f"{where}.rules[{r}]", problems) for r, rule in enumerate(raw_rules)]
        groups.append(RuleGroup(str(group_name), tuple(r for r in rules if r is not None), interval))
    return RuleFile(name, tuple(groups))


def _parse_rule(raw: Any, where: str, problems: list[str]) -> Optional[AlertRule]:
    if not isinstance(raw, Mapping):
        problems.append(f"{where}: a mapping with alert, expr, for, severity and annotations")
        return None
    alert = raw.get("alert")
    if "record" in raw:
        problems.append(f"{where}: recording rules are not supported here, only alerting rules")
        return None
    if not isinstance(alert, str) or not _ALERT_NAME.match(alert):
        problems.append(f"{where}.alert: an UpperCamelCase alert name, got {alert!r}")
        return None
    where = f"{where} ({alert})"
    before = len(problems)
    for key in sorted(set(raw) - _RULE_KEYS):
        problems.append(f"{where}.{key}: unknown key; allowed: {', '.join(sorted(_RULE_KEYS))}")

    expr = raw.get("expr")
    if not isinstance(expr, str) or not expr.strip():
        problems.append(f"{where}.expr: a PromQL expression")
        expr = ""
    expr = expr.strip()

    threshold = None
    if "threshold" in raw:
        threshold = _per_tier(raw["threshold"], f"{where}.threshold", _number, problems)
        if THRESHOLD_PLACEHOLDER not in expr:
            problems.append(f"{where}.threshold: set, but expr does not use {THRESHOLD_PLACEHOLDER}")
    elif THRESHOLD_PLACEHOLDER in expr:
        problems.append(f"{where}.threshold: expr uses {THRESHOLD_PLACEHOLDER}, so threshold is required")

    for_ = _per_tier(raw.get("for"), f"{where}.for", _duration, problems)
    severity = _per_tier(raw.get("severity"), f"{where}.severity", _severity, problems)

    requires = raw.get("requires", [])
    if not isinstance(requires, list) or any(r not in CAPABILITIES for r in requires):
        problems.append(f"{where}.requires: a list of {', '.join(CAPABILITIES)}, got {requires!r}")
        requires = []

    tiers = raw.get("tiers", list(TIERS))
    if not isinstance(tiers, list) or not tiers or any(t not in TIERS for t in tiers):
        problems.append(f"{where}.tiers: a non-empty list of {', '.join(TIERS)}, got {tiers!r}")
        tiers = list(TIERS)

    labels = raw.get("labels", {})
    if not _string_map(labels):
        problems.append(f"{where}.labels: a mapping of strings")
        labels = {}
    elif "severity" in labels:
        problems.append(f"{where}.labels.severity: set severity with the rule's `severity` key (per tier)")

    annotations = raw.get("annotations")
    if not _string_map(annotations):
        problems.append(f"{where}.annotations: a mapping of strings with {', '.join(REQUIRED_ANNOTATIONS)}")
        annotations = {}
    else:
        for key in REQUIRED_ANNOTATIONS:
            if not str(annotations.get(key, "")).strip():
                problems.append(f"{where}.annotations.{key}: required")

    if len(problems) > before:
        return None
    return AlertRule(
        alert=alert,
        expr=expr,
        for_=for_,
        severity=severity,
        threshold=threshold,
        requires=frozenset(requires),
        tiers=frozenset(tiers),
        labels=dict(labels),
        annotations={k: str(v).strip() for k, v in annotations.items()},
    )


def _string_map(value: Any) -> bool:
    return isinstance(value, Mapping) and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())


def _per_tier(value: Any, where: str, check: Any, problems: list[str]) -> dict[str, Any]:
    """One value for every tier, or exactly one per tier; each passed through `check`."""
    if value is None:
        problems.append(f"{where}: required (one value, or one per tier: {', '.join(TIERS)})")
        return {}
    if isinstance(value, Mapping):
        if set(value) != set(TIERS):
            problems.append(
                f"{where}: a per-tier value needs exactly {', '.join(TIERS)}, got {', '.join(map(str, value))}"
            )
            return {}
        out = {}
        for tier in TIERS:
            message = check(value[tier])
            if message:
                problems.append(f"{where}.{tier}: {message}, got {value[tier]!r}")
            out[tier] = value[tier]
        return out
    message = check(value)
    if message:
        problems.append(f"{where}: {message}, got {value!r}")
    return {tier: value for tier in TIERS}


def _duration(value: Any) -> Optional[str]:
    if isinstance(value, str) and _DURATION.match(value):
        return None
    return "a Prometheus duration such as 0m, 10m or 1h"


def _severity(value: Any) -> Optional[str]:
    return None if value in SEVERITIES else f"one of {', '.join(SEVERITIES)}"


def _number(value: Any) -> Optional[str]:
    return None if isinstance(value, (int, float)) and not isinstance(value, bool) else "a number"


# --- rendering -----------------------------------------------------------------------------------------


def rule_groups(rule_file: RuleFile, tier: str, capabilities: Iterable[str]) -> list[dict[str, Any]]:
    """The file's groups as Prometheus reads them for `tier`, without rules the environment cannot use."""
    if tier not in TIERS:
        raise ValueError(f"tier {tier!r} is not one of {', '.join(TIERS)}")
    capabilities = frozenset(capabilities)
    groups = []
    for group in rule_file.groups:
        rules = [rule.resolved(tier) for rule in group.rules if rule.applies(capabilities, tier)]
        if rules:
            groups.append(
                {"name": group.name, **({"interval": group.interval} if group.interval else {}), "rules": rules}
            )
    return groups


def prometheus_rule(rule_file: RuleFile, tier: str, capabilities: Iterable[str]) -> Optional[dict[str, Any]]:
    """The PrometheusRule for one file and environment, or None when no rule of it applies there."""
    groups = rule_groups(rule_file, tier, capabilities)
    if not groups:
        return None
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {
            "name": f"{NAME_PREFIX}-{rule_file.name}",
            "namespace": NAMESPACE,
            "labels": {**LABELS, "gpu-platform/environment": tier},
        },
        "spec": {"groups": groups},
    }


@dataclass(frozen=True)
class AlertingArgs:
    environment: str  # dev | staging | prod
    capabilities: frozenset[str]  # see CAPABILITIES
    rules_dir: Path = RULES_DIR

    def __post_init__(self) -> None:
        problems = []
        if self.environment not in TIERS:
            problems.append(f"environment must be one of {', '.join(TIERS)}, got {self.environment!r}")
        unknown = sorted(set(self.capabilities) - set(CAPABILITIES))
        if unknown:
            problems.append(f"unknown capabilities {unknown}; known: {', '.join(CAPABILITIES)}")
        if problems:
            raise ValueError("AlertingArgs: " + "; ".join(problems))


class Alerting(pulumi.ComponentResource):
    """One PrometheusRule per file of manifests/alerts/ that has a rule for this environment."""

    rules: dict[str, k8s.apiextensions.CustomResource]  # by file name

    def __init__(self, name: str, args: AlertingArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("gpu-platform:workloads:Alerting", name, {}, opts)
        # The caller's depends_on (the monitoring release, which installs the PrometheusRule CRD and the
        # namespace) is not recorded on a component's children, so each rule carries it itself.
        child = pulumi.ResourceOptions(parent=self, depends_on=opts.depends_on if opts else None)
        self.rules = {}
        for rule_file in load_rule_files(args.rules_dir):
            manifest = prometheus_rule(rule_file, args.environment, args.capabilities)
            if manifest is None:
                continue
            # A CustomResource with an explicit namespace previews on an empty environment (components/mesh.py).
            self.rules[rule_file.name] = custom_resource(f"{name}-{rule_file.name}", manifest, child)
        self.register_outputs({"rules": sorted(self.rules)})


# --- docs/alerts.md -------------------------------------------------------------------------------------

DOCS_BEGIN = "<!-- BEGIN GENERATED: python -m components.alerting --docs -->"
DOCS_END = "<!-- END GENERATED -->"


def _per_tier_cell(values: Mapping[str, Any], fmt: Any = str) -> str:
    distinct = {fmt(values[t]) for t in TIERS}
    if len(distinct) == 1:
        return distinct.pop()
    return " / ".join(fmt(values[t]) for t in TIERS)


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def alerts_table(rule_files: Iterable[RuleFile]) -> str:
    """The Markdown table of docs/alerts.md: every alert, its threshold, `for` and severity per tier, runbook."""
    lines = [
        "| Alert | What it means | Needs | Threshold | `for` (dev / staging / prod) | Severity (dev / staging / prod) | First action |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for rule_file in rule_files:
        for rule in rule_file.rules:
            threshold = _per_tier_cell(rule.threshold, format_number) if rule.threshold else "-"
            runbook = _cell(rule.annotations["runbook"])
            meaning = _cell(rule.annotations["description"].split(". ")[0].rstrip(".") + ".")
            needs = ", ".join(sorted(rule.requires)) or "-"
            if rule.tiers != frozenset(TIERS):
                needs += f"; {', '.join(t for t in TIERS if t in rule.tiers)} only"
            lines.append(
                f"| `{rule.alert}` ({rule_file.name}) | {meaning} | {needs} | {threshold} "
                f"| {_per_tier_cell(rule.for_)} | {_per_tier_cell(rule.severity)} | {runbook} |"
            )
    return "\n".join(lines)


def with_alerts_table(document: str, rule_files: Iterable[RuleFile]) -> str:
    """`document` with the text between DOCS_BEGIN and DOCS_END replaced by the current table."""
    before, begin, rest = document.partition(DOCS_BEGIN)
    _, end, after = rest.partition(DOCS_END)
    if not begin or not end:
        raise ValueError(f"the document has no {DOCS_BEGIN} ... {DOCS_END} section")
    return f"{before}{DOCS_BEGIN}\n{alerts_table(rule_files)}\n{DOCS_END}{after}"


def main(argv: Optional[list[str]] = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", action="store_true", help="rewrite the alert table in docs/alerts.md")
    args = parser.parse_args(argv)
    if not args.docs:
        parser.print_help()
        return 2
    docs = RULES_DIR.parent.parent / "docs" / "alerts.md"
    docs.write_text(with_alerts_table(docs.read_text(), load_rule_files()))
    print(f"wrote {docs}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
