"""Bad input, hardened: every mistake below gets one clear error naming the file and line or the key,
exit 2 and no traceback, before any resource is registered.

End to end through the render CLI (`infra.tooling.render.main`, with stack files written to a temporary
stacks directory) where the mistake is in a file; directly through `load_settings`, `load_catalog` and
`config_key_problems` where it is in a value.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

import infra.program.clusters
import infra.program.stack_config
from infra.program.model_catalog import (
    CATALOG_DIR,
    MAX_CATALOG_FILE_BYTES,
    MAX_CATALOG_MODELS,
    MAX_MODEL_ARGS,
    MAX_NESTING,
    CatalogError,
    load_catalog,
)
from infra.program.settings import (
    MAX_EKS_API_CIDRS,
    MAX_GKE_API_CIDRS,
    MAX_GPU_POOLS,
    MAX_MACHINE_TYPES,
    MAX_MODELS,
    ConfigError,
    load_settings,
)
from infra.program.stack_config import (
    MAX_STACK_FILE_BYTES,
    InvalidStackConfig,
    config_key_problems,
    load_program_settings,
    stack_input,
)
from infra.tooling.mock_engine import render_stack, run_under_mocks
from tests.conftest import multi_gpu_pools, render_broken

AWS_DEV = (Path(infra.program.stack_config.ROOT) / "stacks" / "Pulumi.aws-dev.yaml").read_text()


# --- helpers ----------------------------------------------------------------------------------


def problems_of(stack: str, **overrides: Any) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_settings(stack_input(stack, overrides), stack)
    return caught.value.problems


def settings_of(stack: str, **overrides: Any) -> Any:
    return load_settings(stack_input(stack, overrides), stack)


def write_catalog(tmp_path: Path, files: dict[str, str]) -> Path:
    directory = tmp_path / "manifests" / "models"
    directory.mkdir(parents=True)
    for name, text in files.items():
        (directory / name).write_text(text)
    return directory


def catalog_problems(directory: Path) -> list[str]:
    with pytest.raises(CatalogError) as caught:
        load_catalog(directory)
    return caught.value.problems


def shipped_entry(name: str = "mnist-classifier") -> dict[str, Any]:
    return yaml.safe_load((CATALOG_DIR / f"{name}.yaml").read_text())


# --- not YAML: file:line:column, not a traceback pointing at <unicode string> -----------------


@pytest.mark.parametrize(
    ("text", "location", "problem"),
    [
        (
            "config:\n  gpu-platform:environment: dev\n  gpu-platform:gpuPools: {gpu: [unclosed\n",
            ":4:1:",
            "expected ',' or ']', but got '<stream end>' (while parsing a flow sequence at line 3, column 32)",
        ),
        (
            "config:\n  gpu-platform:environment: dev\n  gpu-platform:models: - sentiment\n",
            ":3:24:",
            "sequence entries are not allowed here (a list starts on the line after its key",
        ),
        ("config:\n\tgpu-platform:environment: dev\n", ":2:1:", "a tab is not allowed"),
    ],
    ids=["unclosed-bracket", "list-item-on-the-key-line", "tab"],
)
def test_a_stack_file_that_is_not_yaml_names_file_line_and_column(
    stacks: Path, capsys: pytest.CaptureFixture[str], text: str, location: str, problem: str
) -> None:
    err = render_broken(stacks, text, capsys)
    assert "has 1 configuration error(s)" in err
    assert f"Pulumi.broken.yaml{location} " in err and problem in err
    assert "<unicode string>" not in err


def test_a_stack_file_that_is_not_a_mapping_is_one_error(stacks: Path, capsys: pytest.CaptureFixture[str]) -> None:
    err = render_broken(stacks, "- gpu-platform:environment: dev\n", capsys)
    assert "Pulumi.broken.yaml: must be a mapping with a `config:` block (got a list)" in err
    err = render_broken(stacks, "config: [gpu-platform:environment]\n", capsys)
    assert "config: must be a mapping of `namespace:key: value` (got a list)" in err
    err = render_broken(stacks, "config:\n  42: dev\n", capsys)
    assert "config: keys are `namespace:key` strings such as gpu-platform:models (got 42)" in err


def test_a_catalog_file_that_is_not_yaml_names_line_and_column(tmp_path: Path) -> None:
    directory = write_catalog(tmp_path, {"broken.yaml": "name: broken\nargs: [unclosed\n", "tabbed.yaml": "a:\n\tb: 1\n"})
    problems = catalog_problems(directory)
    assert problems == [
        "manifests/models/broken.yaml: not valid YAML at line 3, column 1: expected ',' or ']', but got "
        "'<stream end>' (while parsing a flow sequence at line 2, column 7)",
        "manifests/models/tabbed.yaml: not valid YAML at line 2, column 1: found character '\\t' that cannot "
        "start any token (YAML is indented with spaces; a tab is not allowed)",
    ]


# --- nesting: bounded, never a RecursionError -------------------------------------------------


def test_deep_nesting_in_a_stack_file_is_one_error_not_a_recursion_error(
    stacks: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    deep = "[" * 5000 + "]" * 5000
    err = render_broken(stacks, f"config:\n  gpu-platform:environment: dev\n  gpu-platform:x: {deep}\n", capsys)
    assert f"Pulumi.broken.yaml:3:{19 + MAX_NESTING - 2}: nested deeper than {MAX_NESTING} levels" in err  # the 15th [
    assert "RecursionError" not in err


def test_nesting_through_aliases_is_bounded_too(stacks: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ten = "[" * 10 + "1" + "]" * 10
    text = f"config:\n  gpu-platform:a: &a {ten}\n  gpu-platform:b: [[[[[[*a]]]]]]\n"
    err = render_broken(stacks, text, capsys)
    assert "Pulumi.broken.yaml:3:25: nested deeper than 16 levels once this alias is followed" in err


def test_an_alias_that_contains_itself_is_refused(stacks: Path, capsys: pytest.CaptureFixture[str]) -> None:
    err = render_broken(stacks, "config:\n  gpu-platform:models: &loop [*loop]\n", capsys)
    assert "Pulumi.broken.yaml:2:31: an alias refers to a mapping or list that contains it" in err


def test_deep_nesting_in_settings_from_the_cli_is_one_error() -> None:
    # Under `pulumi up` the CLI hands the program JSON, not our YAML: load_settings bounds it too.
    deep: Any = {"leaf": 1}
    for _ in range(3000):
        deep = {"a": deep}
    raw = {**stack_input("aws-dev"), "platform": deep}
    with pytest.raises(ConfigError) as caught:
        load_settings(raw, "aws-dev")
    assert caught.value.problems == [
        f"gpu-platform:platform.a.a.a.…: nested deeper than {MAX_NESTING} levels of mappings and lists"
    ]


def test_deep_nesting_in_a_catalog_file_is_one_error(tmp_path: Path) -> None:
    directory = write_catalog(tmp_path, {"deep.yaml": "name: deep\nargs: " + "[" * 3000 + "]" * 3000 + "\n"})
    (problem,) = catalog_problems(directory)
    assert problem == (
        f"manifests/models/deep.yaml: nested deeper than {MAX_NESTING} levels of mappings and lists (line 2, column 22)"
    )


# --- size: bounded before it costs minutes and gigabytes ----------------------------------------


def test_a_huge_stack_file_is_refused_before_it_is_parsed(stacks: Path, capsys: pytest.CaptureFixture[str]) -> None:
    padding = "# " + "x" * 1000 + "\n"
    text = AWS_DEV + padding * (MAX_STACK_FILE_BYTES // len(padding) + 1)
    err = render_broken(stacks, text, capsys)
    assert f"Pulumi.broken.yaml: {len(text.encode()):,} bytes, more than the 256 KiB this file may have" in err


def test_an_alias_bomb_is_refused_before_it_expands(stacks: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = ["config:", "  gpu-platform:a: &a [x, x, x, x, x, x, x, x, x, x]"]
    for level in "bcdefgh":
        previous = chr(ord(level) - 1)
        lines.append(f"  gpu-platform:{level}: &{level} [{', '.join([f'*{previous}'] * 10)}]")
    err = render_broken(stacks, "\n".join(lines) + "\n", capsys)
    assert "more than 10,000 values once aliases are expanded" in err


def test_thousands_of_gpu_pools_are_one_error_in_milliseconds(stacks: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pools = "".join(f"    gpu-{index}: {{gpuType: nvidia-l4}}\n" for index in range(2000))
    started = time.monotonic()
    err = render_broken(stacks, AWS_DEV + "  gpu-platform:gpuPools:\n" + pools, capsys)
    assert time.monotonic() - started < 30  # was minutes and gigabytes; the error comes before any resource
    assert "has 1 configuration error(s)" in err
    limit = f"at most {MAX_GPU_POOLS} entries, see the limits in infra/program/settings.py (got 2000)"
    assert f"gpu-platform:gpuPools: {limit}" in err


@pytest.mark.parametrize(
    ("stack", "overrides", "key", "limit"),
    [
        ("aws-dev", {"gpuPools": {f"g{i}": {"gpuType": "nvidia-l4"} for i in range(MAX_GPU_POOLS + 1)}}, "gpuPools", MAX_GPU_POOLS),
        ("local", {"gpuPools": {f"g{i}": {"gpuType": "nvidia-l4"} for i in range(MAX_GPU_POOLS + 1)}}, "gpuPools", MAX_GPU_POOLS),
        ("aws-dev", {"models": {f"m{i}": {} for i in range(MAX_MODELS + 1)}}, "models", MAX_MODELS),
        (
            "aws-dev",
            {"aws": {"region": "us-west-2", "apiServerAllowedCidrs": [f"198.51.{i}.0/24" for i in range(MAX_EKS_API_CIDRS + 1)]}},
            "aws.apiServerAllowedCidrs",
            MAX_EKS_API_CIDRS,
        ),
        (
            "gcp-dev",
            {"gcp": {"project": "acme-ml-dev", "region": "us-central1",
                     "apiServerAllowedCidrs": [f"198.51.{i}.0/24" for i in range(MAX_GKE_API_CIDRS + 1)]}},
            "gcp.apiServerAllowedCidrs",
            MAX_GKE_API_CIDRS,
        ),
        (
            "aws-dev",
            {"gpuPools": {"gpu": {"gpuType": "nvidia-l4", "machineTypes": [f"g6.{i}xlarge" for i in range(MAX_MACHINE_TYPES + 1)]}}},
            "gpuPools.gpu.machineTypes",
            MAX_MACHINE_TYPES,
        ),
    ],  # fmt: skip
    ids=["eks-node-groups", "existing-pools", "models", "eks-api-cidrs", "gke-authorized-networks", "machine-types"],
)
def test_list_and_map_lengths_are_bounded_with_one_error(stack: str, overrides: dict, key: str, limit: int) -> None:
    (value,) = overrides.values()
    count = len(value) if key in ("gpuPools", "models") else limit + 1
    assert problems_of(stack, **overrides) == [
        f"gpu-platform:{key}: at most {limit} entries, see the limits in infra/program/settings.py (got {count})"
    ]


def test_the_limits_are_at_the_limit_not_below_it() -> None:
    pools = {f"g{i}": {"gpuType": "nvidia-l4"} for i in range(MAX_GPU_POOLS)}
    assert len(settings_of("aws-dev", gpuPools=pools, models={}).gpu_pools) == MAX_GPU_POOLS
    cidrs = [f"198.51.{i}.0/24" for i in range(MAX_EKS_API_CIDRS)]
    settings = settings_of("aws-dev", aws={"region": "us-west-2", "apiServerAllowedCidrs": cidrs})
    assert len(settings.aws.api_server_allowed_cidrs) == MAX_EKS_API_CIDRS


def test_catalog_size_is_bounded(tmp_path: Path) -> None:
    entry = shipped_entry()
    files = {f"m{i}.yaml": yaml.safe_dump({**entry, "name": f"m{i}"}) for i in range(MAX_CATALOG_MODELS + 1)}
    assert catalog_problems(write_catalog(tmp_path / "many", files)) == [
        f"manifests/models/: {MAX_CATALOG_MODELS + 1} files, more than the {MAX_CATALOG_MODELS} allowed"
    ]
    big = yaml.safe_dump(entry) + "# " + "x" * MAX_CATALOG_FILE_BYTES + "\n"
    (problem,) = catalog_problems(write_catalog(tmp_path / "big", {"mnist-classifier.yaml": big}))
    assert problem.startswith("manifests/models/mnist-classifier.yaml: ") and "more than the 64 KiB" in problem
    args = yaml.safe_dump({**entry, "args": [f"--flag-{i}" for i in range(MAX_MODEL_ARGS + 1)]})
    (problem,) = catalog_problems(write_catalog(tmp_path / "args", {"mnist-classifier.yaml": args}))
    assert problem.startswith("manifests/models/mnist-classifier.yaml: args: Tuple should have at most 64 items")


# --- duplicated keys: an error naming the key and both lines ------------------------------------


def test_a_duplicated_stack_key_names_the_key_and_both_lines(stacks: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = AWS_DEV + "  gpu-platform:aws:\n    region: eu-west-1\n"
    line = AWS_DEV.count("\n") + 1
    err = render_broken(stacks, text, capsys)
    assert (
        f"Pulumi.broken.yaml:{line}:3: duplicate key 'gpu-platform:aws' (first on line 5, again on line {line}); "
        "YAML keeps only the last one, so write it once"
    ) in err


def test_a_duplicated_nested_key_is_an_error_too(stacks: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = "config:\n  gpu-platform:gpuPools:\n    gpu:\n      maxSize: 2\n      gpuType: nvidia-l4\n      maxSize: 20\n"
    err = render_broken(stacks, text, capsys)
    assert "Pulumi.broken.yaml:6:7: duplicate key 'maxSize' (first on line 4, again on line 6)" in err


def test_a_merge_key_is_not_a_duplicate(stacks: Path) -> None:
    text = AWS_DEV.replace(
        "  gpu-platform:aws:\n", "  gpu-platform:network: &net {region: us-west-2}\n  gpu-platform:aws:\n    <<: *net\n"
    )
    (stacks / "Pulumi.merged.yaml").write_text(text)
    # `<<: *net` then `region:` again overrides the merged region, as YAML intends: no duplicate. The one
    # problem left is the helper key itself, which is not a setting.
    assert problems_of("merged") == [
        "gpu-platform:network: unknown key; allowed keys here: auth, aws, batchJobs, budget, cloud, clusterName, "
        "deletionProtection, environment, gpuPools, kubernetesVersion, models, platform, systemPool, tenants, tls"
    ]


def test_a_duplicated_catalog_key_names_both_lines(tmp_path: Path) -> None:
    text = yaml.safe_dump(shipped_entry(), sort_keys=False) + "port: 9000\nport: 9001\n"
    (problem,) = catalog_problems(write_catalog(tmp_path, {"mnist-classifier.yaml": text}))
    line = text.count("\n")
    assert problem == (
        f"manifests/models/mnist-classifier.yaml: not valid YAML at line {line}, column 1: duplicate key 'port' "
        f"(first on line {line - 1}, again on line {line}); YAML keeps only the last one, so write it once"
    )


# --- config namespaces and plain-text credentials ----------------------------------------------


def test_a_misspelt_project_namespace_is_an_error(stacks: Path, capsys: pytest.CaptureFixture[str]) -> None:
    err = render_broken(stacks, AWS_DEV.replace("  gpu-platform:models:", "  gpu-platfrom:models:"), capsys)
    assert (
        "gpu-platfrom:models: unknown config namespace 'gpu-platfrom' (did you mean gpu-platform:models?); "
        "nothing reads this key. Known namespaces: gpu-platform, aws, gcp, kubernetes, pulumi"
    ) in err


def test_provider_namespaces_are_known() -> None:
    config = {"aws:region": "us-west-2", "gcp:project": "p", "kubernetes:context": "kind", "pulumi:tags": "{}"}
    assert config_key_problems({**config, "gpu-platform:environment": "dev"}, set()) == []
    (problem,) = config_key_problems({"azure:location": "westeurope"}, set())
    assert problem.startswith("azure:location: unknown config namespace 'azure'; nothing reads this key.")


def test_a_plain_text_credential_is_an_error_that_does_not_repeat_it(
    stacks: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    err = render_broken(stacks, AWS_DEV + "  aws:secretKey: wJalrXUtnFEMI-not-a-real-key\n", capsys)
    assert (
        "aws:secretKey: a credential in plain text; store it encrypted with `pulumi config set --secret aws:secretKey`"
    ) in err
    assert "wJalrXUtnFEMI" not in err


@pytest.mark.parametrize(
    ("key", "value", "refused"),
    [
        ("aws:accessKey", "AKIAEXAMPLE", True),
        ("aws:token", "session", True),
        ("gcp:credentials", '{"type": "service_account"}', True),
        ("kubernetes:kubeconfig", "apiVersion: v1\nclusters: []\n", True),
        ("kubernetes:kubeconfig", '{"apiVersion": "v1"}', True),
        ("kubernetes:kubeconfig", "~/.kube/config", False),  # a path is not a credential
        ("aws:profile", "dev", False),
    ],
)
def test_credential_keys_must_be_secure(key: str, value: str, refused: bool) -> None:
    assert bool(config_key_problems({key: value}, set())) is refused
    assert config_key_problems({key: value}, {key}) == []  # a `secure:` value is what the CLI marks secret


def test_under_pulumi_up_the_same_checks_run_on_the_config_the_cli_passes() -> None:
    # The CLI decrypts secure values and lists their keys as secret; a plain one is not in that list.
    config = {f"gpu-platform:{k}": v for k, v in _cli_strings(stack_input("aws-dev")).items()}

    def settings_with(extra: dict[str, str], secret: list[str]) -> Any:
        return run_under_mocks("aws-dev", load_program_settings, {**config, **extra}, secret)

    settings_with({"aws:secretKey": "decrypted"}, ["aws:secretKey"])  # secure in the stack file: fine
    with pytest.raises(InvalidStackConfig) as caught:
        settings_with({"aws:secretKey": "plain", "gpu-platfrom:x": "1"}, [])
    assert [problem.split(": ")[0] for problem in caught.value.problems] == ["aws:secretKey", "gpu-platfrom:x"]


def _cli_strings(raw: dict[str, Any]) -> dict[str, str]:
    """Project keys as the CLI passes them: objects and lists JSON-encoded, scalars as strings."""
    return {k: json.dumps(v) if isinstance(v, (dict, list)) else str(v) for k, v in raw.items()}


# --- CIDRs: sizes, overlaps, the control plane /28, and the whole internet ---------------------


@pytest.mark.parametrize(
    ("cidr", "problem"),
    [
        ("10.0.0.0/8", "an AWS VPC is /16 (65,536 addresses) to /28 (16 addresses)"),
        ("10.0.0.0/15", "an AWS VPC is /16 (65,536 addresses) to /28 (16 addresses)"),
        ("10.0.0.0/24", "/24 is a valid AWS VPC, but this platform splits it into public subnets of /30"),
        ("10.0.0.0/28", "/28 is a valid AWS VPC, but this platform splits it into public subnets of /34"),
        ("fd00::/56", "must be an IPv4 CIDR block"),
    ],
)
def test_aws_vpc_size_bounds(cidr: str, problem: str) -> None:
    (found,) = problems_of("aws-dev", aws={"region": "us-west-2", "vpcCidr": cidr})
    assert found.startswith("gpu-platform:aws.vpcCidr: ") and problem in found and f"(got '{cidr}')" in found


def test_aws_vpc_sizes_this_platform_can_split() -> None:
    for cidr in ("10.0.0.0/16", "10.0.0.0/22"):
        assert settings_of("aws-dev", aws={"region": "us-west-2", "vpcCidr": cidr}).aws.vpc_cidr == cidr


def test_gke_control_plane_range_is_a_28() -> None:
    gcp = {"project": "acme-ml-dev", "region": "us-central1", "masterCidr": "172.16.0.0/24"}
    (problem,) = problems_of("gcp-dev", gcp=gcp)
    assert problem == (
        "gpu-platform:gcp.masterCidr: the GKE control plane range of a private cluster is exactly a /28, "
        "e.g. 172.16.0.0/28 (got '172.16.0.0/24')"
    )


@pytest.mark.parametrize(
    ("ranges", "problem"),
    [
        ({"podsCidr": "10.10.0.0/16"}, "podsCidr 10.10.0.0/16 overlaps subnetCidr 10.10.0.0/20"),
        ({"servicesCidr": "10.16.0.0/20"}, "servicesCidr 10.16.0.0/20 overlaps podsCidr 10.16.0.0/14"),
        ({"masterCidr": "10.20.0.0/28"}, "masterCidr 10.20.0.0/28 overlaps servicesCidr 10.20.0.0/20"),
    ],
)
def test_gke_ranges_must_not_overlap(ranges: dict, problem: str) -> None:
    (found,) = problems_of("gcp-dev", gcp={"project": "acme-ml-dev", "region": "us-central1", **ranges})
    assert found == (
        f"gpu-platform:gcp: {problem}; the node subnet, pod, service and control-plane ranges must not overlap"
    )


@pytest.mark.parametrize("stack", ["aws-dev", "gcp-dev"])
@pytest.mark.parametrize(
    "cidrs",
    [["0.0.0.0/1", "128.0.0.0/1"], ["0.0.0.0/2", "64.0.0.0/2", "128.0.0.0/1"], ["::/1", "8000::/1"]],
    ids=["two-halves", "three-parts", "ipv6-halves"],
)
def test_an_allow_list_that_adds_up_to_the_internet_is_refused_in_every_tier(stack: str, cidrs: list[str]) -> None:
    cloud = stack.split("-")[0]
    block = {"aws": {"region": "us-west-2"}, "gcp": {"project": "acme-ml-dev", "region": "us-central1"}}[cloud]
    (problem,) = problems_of(stack, **{cloud: {**block, "apiServerAllowedCidrs": cidrs}})
    assert problem.startswith(f"gpu-platform:{cloud}.apiServerAllowedCidrs: {', '.join(cidrs)} together cover ")
    assert "which opens the API server to the internet; list your office or VPN CIDRs" in problem


def test_in_prod_the_allow_list_covers_at_most_a_slash_8() -> None:
    gcp = {"project": "acme-ml-prod", "region": "us-central1"}
    (problem,) = problems_of("gcp-prod", gcp={**gcp, "apiServerAllowedCidrs": ["10.0.0.0/8", "203.0.113.0/24"]})
    assert "in prod the allowed ranges may cover at most 16,777,216 addresses (a /8) together; these cover 16,777,472" in problem
    assert settings_of("gcp-prod", gcp={**gcp, "apiServerAllowedCidrs": ["10.0.0.0/8"]}).gcp.api_server_allowed_cidrs
    assert settings_of("gcp-dev", gcp={"project": "acme-ml-dev", "region": "us-central1",
                                       "apiServerAllowedCidrs": ["0.0.0.0/1"]})  # fmt: skip


# --- regions: checked against a dated list, not only a pattern ----------------------------------


def test_a_region_without_gpus_is_refused() -> None:
    (problem,) = problems_of("aws-dev", aws={"region": "us-west-9"})
    assert problem.startswith("gpu-platform:aws.region: not an AWS region with GPU instances (the list AWS_GPU_REGIONS in")
    assert "us-west-2" in problem and problem.endswith("(got 'us-west-9')")
    (problem,) = problems_of("gcp-dev", gcp={"project": "acme-ml-dev", "region": "moon-central1"})
    assert problem.startswith("gpu-platform:gcp.region: not a") and "GCP_GPU_REGIONS" in problem and "us-central1" in problem


# --- a prod spot pool must not serve ------------------------------------------------------------


@pytest.mark.parametrize("stack", ["aws-prod", "gcp-prod"])
@pytest.mark.parametrize("purpose", [{}, {"purpose": "serving"}], ids=["no-purpose", "serving"])
def test_a_prod_spot_pool_that_may_serve_is_an_error(stack: str, purpose: dict) -> None:
    pools = {"gpu-serving": {"gpuType": "nvidia-l4"}, "cheap": {"gpuType": "nvidia-l4", "capacityType": "spot", **purpose}}
    (problem,) = problems_of(stack, gpuPools=pools)
    assert problem.startswith("gpu-platform:gpuPools.cheap: purpose: a spot pool in prod must not serve models")
    assert "set `purpose: batch`" in problem


def test_spot_pools_that_are_batch_or_outside_prod_are_fine() -> None:
    batch = {"gpuType": "nvidia-l4", "capacityType": "spot", "purpose": "batch"}
    pools = {"gpu-serving": {"gpuType": "nvidia-l4"}, "cheap": batch, **multi_gpu_pools("aws-prod")}
    assert settings_of("aws-prod", gpuPools=pools).gpu_pools["cheap"].purpose == "batch"
    assert settings_of("aws-dev").gpu_pools["gpu-spot"].capacity_type == "spot"  # dev serves from spot on purpose


def test_a_prod_spot_pool_end_to_end(stacks: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = (infra.program.stack_config.ROOT / "stacks" / "Pulumi.aws-prod.yaml").read_text()
    err = render_broken(stacks, text.replace("      purpose: batch\n", ""), capsys)
    assert "gpu-platform:gpuPools.gpu-batch: purpose: a spot pool in prod must not serve models" in err


# --- the model entry: domain and TLS --------------------------------------------------------------


@pytest.mark.parametrize("domain", ["example.com", "models.example.com", "models.example.org", "ai.example"])
def test_a_documentation_domain_in_prod_exits_2_naming_the_key(
    stacks: Path, capsys: pytest.CaptureFixture[str], domain: str
) -> None:
    text = (infra.program.stack_config.ROOT / "stacks" / "Pulumi.aws-prod.yaml").read_text()
    shipped = yaml.safe_load(text)["config"]["gpu-platform:platform"]["knative"]["domain"]
    err = render_broken(stacks, text.replace(f"domain: {shipped}\n", f"domain: {domain}\n"), capsys)
    problems = [line for line in err.splitlines() if "gpu-platform:" in line]
    assert len(problems) == 1 and "gpu-platform:platform.knative.domain:" in problems[0]
    assert "documentation domain" in problems[0]


def test_a_documentation_domain_outside_prod_and_a_real_one_in_prod_pass() -> None:
    assert settings_of("aws-dev", platform={"knative": {"domain": "example.com"}}).platform.knative.domain == "example.com"
    # `example` inside a real name is not the reserved domain.
    prod = settings_of("aws-prod", platform={"knative": {"domain": "models.example-corp.com"}})
    assert prod.platform.knative.domain == "models.example-corp.com"


@pytest.mark.parametrize(
    ("stack", "tls", "problem"),
    [
        ("aws-dev", {"mode": "acme", "acme": None}, "gpu-platform:tls: acme: required with `mode: acme`"),
        ("aws-dev", {"mode": "acme", "acme": {"email": "a@acme.com"}}, "gpu-platform:tls: acme.hostedZoneId: required on aws"),
        ("gcp-dev", {"mode": "acme", "acme": {"email": "a@acme.com", "hostedZoneId": "Z0ABC"}},
         "gpu-platform:tls: acme.hostedZoneId: a Route 53 zone"),
        ("local", {"mode": "acme", "acme": {"email": "a@acme.com"}}, "gpu-platform:tls: mode: `acme` answers DNS-01"),
        ("local", {"acme": {"email": "a@acme.com"}}, "gpu-platform:tls: acme: only with `mode: acme`"),
        ("aws-dev", {"mode": "acme", "acme": {"email": "not-an-address", "hostedZoneId": "Z0ABC"}}, "gpu-platform:tls.acme.email:"),
    ],  # fmt: skip
)
def test_tls_settings_name_what_is_missing(stack: str, tls: dict, problem: str) -> None:
    (found,) = problems_of(stack, tls=tls)
    assert found.startswith(problem), found


# --- Kubernetes quantities per resource ---------------------------------------------------------


@pytest.mark.parametrize(
    ("resources", "problem"),
    [
        ({"memory": "512m"}, "resources.memory: `m` is milli: 512m is 512 thousandths of a byte; write Mi (mebibytes), e.g. `512Mi` (got '512m')"),
        ({"memory": "2GB"}, "resources.memory: a memory quantity is bytes with a suffix Ki, Mi, Gi, Ti"),
        ({"memory": "0"}, "resources.memory: a memory quantity is bytes"),
        ({"cpu": "1Gi"}, "resources.cpu: a CPU quantity is cores (`1`, `0.5`) or millicores (`500m`) (got '1Gi')"),
        ({"cpu": "0.5m"}, "resources.cpu: a CPU quantity is cores"),
        ({"cpu": "0m"}, "resources.cpu: a CPU quantity is cores"),
    ],  # fmt: skip
)
def test_quantities_follow_the_kubernetes_rules_of_their_resource(tmp_path: Path, resources: dict, problem: str) -> None:
    entry = shipped_entry()
    entry["resources"] = {**entry["resources"], **resources}
    (found,) = catalog_problems(write_catalog(tmp_path, {"mnist-classifier.yaml": yaml.safe_dump(entry)}))
    assert found.startswith(f"manifests/models/mnist-classifier.yaml: {problem}")


def test_valid_quantities_pass(tmp_path: Path) -> None:
    entry = shipped_entry()
    entry["resources"] = {**entry["resources"], "cpu": "500m", "memory": "512Mi"}
    other = {**entry, "name": "other", "resources": {**entry["resources"], "cpu": "1.5", "memory": "1G"}}
    files = {"mnist-classifier.yaml": yaml.safe_dump(entry), "other.yaml": yaml.safe_dump(other)}
    directory = write_catalog(tmp_path, files)
    catalog = load_catalog(directory)
    assert (catalog["mnist-classifier"].resources.memory, catalog["other"].resources.cpu) == ("512Mi", "1.5")


# --- nothing is registered: the program stops before the first resource -------------------------


def test_a_bad_stack_stops_before_the_first_resource(monkeypatch: pytest.MonkeyPatch) -> None:
    # The cluster is the program's first resource (infra/__main__.py); it is never reached.
    built: list[Any] = []
    monkeypatch.setattr(infra.program.clusters, "build_cluster", lambda settings: built.append(settings))
    with pytest.raises(InvalidStackConfig) as caught:
        render_stack("aws-prod", {"gpuPools": {"x": {"gpuType": "nvidia-l4", "capacityType": "spot"}}, "models": {}})
    assert [p.split(": ")[0] for p in caught.value.problems] == ["gpu-platform:gpuPools.x"]
    assert built == []


# --- batch jobs (manifests/batch/, gpu-platform:batchJobs) ------------------------------------------------


def test_an_unknown_batch_job_exits_2_with_one_line_naming_the_key(stacks: Path, capsys: pytest.CaptureFixture[str]) -> None:
    prod = (Path(infra.program.stack_config.ROOT) / "stacks" / "Pulumi.aws-prod.yaml").read_text()
    text = prod.replace("    smollm-completions:\n      tenant: language\n", "    smollm-nightly:\n      tenant: language\n")
    assert text != prod
    err = render_broken(stacks, text, capsys)
    assert "stack 'broken' has 1 configuration error(s)" in err
    assert (
        "  - gpu-platform:batchJobs.smollm-nightly: not in the batch job catalog (manifests/batch/); jobs: "
        "smollm-completions" in err.splitlines()
    )


def test_a_bad_batch_catalog_file_names_the_file_and_field(tmp_path: Path) -> None:
    from infra.program.batch_catalog import load_batch_catalog

    (tmp_path / "nightly.yaml").write_text(
        "name: nightly\ndescription: d\nmodel: smollm-135m\ninputPrefix: in\noutputPrefix: out\nshards: 0\nparalelism: 2\n"
    )
    with pytest.raises(CatalogError) as caught:
        load_batch_catalog(tmp_path)
    folder = f"{tmp_path.parent.name}/{tmp_path.name}"
    assert caught.value.problems == [
        f"{folder}/nightly.yaml: shards: Input should be greater than or equal to 1 (got 0)",
        f"{folder}/nightly.yaml: paralelism: unknown field",
    ]
