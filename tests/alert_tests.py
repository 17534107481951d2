"""promtool unit tests for manifests/alerts/, generated per tier from the cases in tests/alerts/.

Each tests/alerts/<file>.test.yaml holds, per alert of manifests/alerts/<file>.yaml, scenarios of
synthetic series and the label sets that must fire. One scenario becomes one promtool test group per
tier, with two checks against that tier's rendering of the rule:

- just before the tier's `for:` has passed, the alert is not firing (skipped for `for: 0m`);
- `settle` later than `for:` (5m unless the scenario says), exactly the `fires` label sets are firing,
  each with the tier's severity. A scenario with `fires: []` proves the alert stays quiet.

The rules are rendered as in every environment (all capabilities) minus their annotations, which
promtool would otherwise compare word for word; `promtool check rules` checks the real files, templates
included. To run the tests by hand (what tests/test_alerts.py does):

    python -m tests.alert_tests build/alert-tests      # writes <tier>/<file>.rules.yaml and .test.yaml
    promtool test rules build/alert-tests/prod/*.test.yaml
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional

import pytest
import yaml

from components.alerting import CAPABILITIES, TIERS, RuleFile, load_rule_files, rule_groups

CASES_DIR = Path(__file__).resolve().parent / "alerts"
PROMTOOL = shutil.which("promtool")
requires_promtool = pytest.mark.skipif(
    PROMTOOL is None,
    reason="promtool is not installed: it is in Debian's `prometheus` package, which .ci/run installs "
    "(apt-get install prometheus); CI runs these tests",
)

INTERVAL = "1m"
DEFAULT_SETTLE = "5m"
_DURATION_PART = re.compile(r"(\d+)(ms|s|m|h|d|w|y)")
_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}


def seconds(duration: str) -> int:
    """A Prometheus duration in whole seconds: "1h30m" -> 5400, "0" -> 0."""
    if duration == "0":
        return 0
    parts = _DURATION_PART.findall(duration)
    if not parts or "".join(n + u for n, u in parts) != duration:
        raise ValueError(f"not a Prometheus duration: {duration!r}")
    return int(sum(int(n) * _SECONDS[u] for n, u in parts))


def duration(total_seconds: int) -> str:
    return f"{total_seconds // 60}m" if total_seconds % 60 == 0 else f"{total_seconds}s"


@dataclass(frozen=True)
class Scenario:
    alert: str
    scenario: str
    series: tuple[Mapping[str, str], ...]
    fires: tuple[Mapping[str, str], ...]
    settle: str = DEFAULT_SETTLE


def load_cases(rule_file: RuleFile, directory: Path = CASES_DIR) -> dict[str, list[Scenario]]:
    """The scenarios for each alert of `rule_file`, from tests/alerts/<name>.test.yaml."""
    path = directory / f"{rule_file.name}.test.yaml"
    document = yaml.safe_load(path.read_text())
    cases: dict[str, list[Scenario]] = {}
    for alert, scenarios in (document.get("alerts") or {}).items():
        cases[alert] = [
            Scenario(
                alert=alert,
                scenario=str(s["scenario"]),
                series=tuple(s["series"]),
                fires=tuple({k: str(v) for k, v in labels.items()} for labels in s.get("fires") or ()),
                settle=str(s.get("settle", DEFAULT_SETTLE)),
            )
            for s in scenarios
        ]
    return cases


def unit_test_rules(rule_file: RuleFile, tier: str) -> dict[str, Any]:
    """The file's rules for `tier`, as a rule file, without annotations (see the module docstring)."""
    groups = rule_groups(rule_file, tier, CAPABILITIES)
    for group in groups:
        for rule in group["rules"]:
            rule.pop("annotations", None)
    return {"groups": groups}


def unit_tests(rule_file: RuleFile, tier: str, cases: Mapping[str, list[Scenario]], rules_path: str) -> dict[str, Any]:
    """A promtool test file for `rule_file` in `tier`, reading its rules from `rules_path`."""
    rules = {rule.alert: rule for rule in rule_file.rules}
    groups = []
    for alert, scenarios in cases.items():
        rule = rules[alert]
        if tier not in rule.tiers:
            continue  # the rule does not exist in this tier (its `tiers`)
        wait = seconds(rule.for_[tier])
        for scenario in scenarios:
            checks = []
            if wait > seconds(INTERVAL):
                checks.append({"eval_time": duration(wait - seconds(INTERVAL)), "alertname": alert, "exp_alerts": []})
            expected = [
                {"exp_labels": {**rule.labels, **labels, "severity": rule.severity[tier]}} for labels in scenario.fires
            ]
            checks.append(
                {"eval_time": duration(wait + seconds(scenario.settle)), "alertname": alert, "exp_alerts": expected}
            )
            groups.append(
                {
                    "name": f"{alert} ({tier}): {scenario.scenario}",
                    "interval": INTERVAL,
                    "input_series": [dict(s) for s in scenario.series],
                    "alert_rule_test": checks,
                }
            )
    return {"rule_files": [rules_path], "evaluation_interval": INTERVAL, "tests": groups}


def write_unit_tests(out_dir: Path, tiers: tuple[str, ...] = TIERS) -> dict[str, list[Path]]:
    """Write <tier>/<file>.rules.yaml and <tier>/<file>.test.yaml for every rule file; the test files per tier."""
    written: dict[str, list[Path]] = {}
    for tier in tiers:
        tier_dir = out_dir / tier
        tier_dir.mkdir(parents=True, exist_ok=True)
        for rule_file in load_rule_files():
            rules_path = tier_dir / f"{rule_file.name}.rules.yaml"
            rules_path.write_text(yaml.safe_dump(unit_test_rules(rule_file, tier), sort_keys=False))
            tests = unit_tests(rule_file, tier, load_cases(rule_file), rules_path.name)
            test_path = tier_dir / f"{rule_file.name}.test.yaml"
            test_path.write_text(yaml.safe_dump(tests, sort_keys=False))
            written.setdefault(tier, []).append(test_path)
    return written


def promtool(*args: str, cwd: Optional[Path] = None) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None, "promtool is not installed (use @requires_promtool)"
    return subprocess.run([PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, timeout=300, check=False)


def main(argv: Optional[list[str]] = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m tests.alert_tests OUT_DIR", file=sys.stderr)
        return 2
    out = Path(args[0])
    for tier, paths in write_unit_tests(out).items():
        print(f"promtool test rules {' '.join(str(p) for p in paths)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
