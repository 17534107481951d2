"""docs/configuration.md: generated from the settings models, complete, and in step with Pulumi.yaml.

The model walk here is written independently of infra/tooling/config_reference.py, so a key the generator
misses is caught rather than missed twice.
"""

from __future__ import annotations

import types
from pathlib import Path
from typing import Annotated, Any, Iterator, Literal, Union, get_args, get_origin

import pytest
from pydantic import BaseModel

from infra.tooling.config_reference import render_reference
from infra.program.settings import PROJECT, TIER_DEFAULTS, AwsStack, ExistingStack, GcpStack, load_settings, with_defaults
from infra.program.stack_config import project_declarations, stack_input, stack_names

DOC = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"
STACK_MODELS: dict[str, type[BaseModel]] = {"aws": AwsStack, "gcp": GcpStack, "existing": ExistingStack}
DECLARED = project_declarations()


def _bare(annotation: Any) -> Any:
    """Strip Optional[...] and Annotated[...] down to the type underneath."""
    while True:
        if get_origin(annotation) is Annotated:
            annotation = get_args(annotation)[0]
        elif get_origin(annotation) in (Union, types.UnionType):
            rest = [a for a in get_args(annotation) if a is not type(None)]
            if len(rest) != 1:
                return annotation
            annotation = rest[0]
        else:
            return annotation


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def stack_file_keys(model: type[BaseModel], prefix: str = "") -> Iterator[str]:
    """Every key a stack file can set, as the reference writes it (`gpuPools.<name>.taints[].key`)."""
    for name, info in model.model_fields.items():
        path = prefix + (info.alias or name)
        yield path
        bare = _bare(info.annotation)
        args = [_bare(a) for a in get_args(bare)]
        if _is_model(bare):
            yield from stack_file_keys(bare, path + ".")
        elif get_origin(bare) is dict and _is_model(args[1]):
            yield from stack_file_keys(args[1], path + ".<name>.")
        elif get_origin(bare) in (tuple, list) and args and _is_model(args[0]):
            yield from stack_file_keys(args[0], path + "[].")


def _top_level_field(model: type[BaseModel], key: str):
    return next((info for name, info in model.model_fields.items() if (info.alias or name) == key), None)


def _pulumi_type(annotation: Any) -> str:
    """The Pulumi.yaml `type` a field of this annotation needs."""
    bare = _bare(annotation)
    if get_origin(bare) is Literal and all(isinstance(arg, str) for arg in get_args(bare)):
        return "string"
    if get_origin(bare) in (tuple, list):
        return "array"
    return {str: "string", int: "integer", bool: "boolean"}.get(bare, f"not declarable ({bare})")


def _row(rendered: str, key: str) -> str:
    start = f"| `{PROJECT}:{key}` |"
    rows = [line for line in rendered.splitlines() if line.startswith(start)]
    assert len(rows) == 1, f"expected one row for {PROJECT}:{key}, found {len(rows)}"
    return rows[0]


@pytest.fixture(scope="module")
def rendered() -> str:
    return render_reference()


# --- the document is current and complete ---------------------------------------------------


def test_docs_configuration_md_is_current(rendered: str) -> None:
    assert DOC.exists() and DOC.read_text() == rendered, (
        "docs/configuration.md is out of date with infra/program/settings.py, Pulumi.yaml or the GPU catalog; "
        "run `infra/run config-reference --write` and commit the result"
    )


@pytest.mark.parametrize("cloud", STACK_MODELS)
def test_every_key_of_the_stack_model_has_a_row(cloud: str, rendered: str) -> None:
    keys = list(stack_file_keys(STACK_MODELS[cloud]))
    assert keys, "the walk found no keys"
    for key in keys:
        row = _row(rendered, key)
        assert cloud in row.split("|")[3], f"{key}: the row does not list {cloud} among its clouds"


def test_rows_carry_bounds_choices_and_defaults_from_the_models(rendered: str) -> None:
    assert "integer (1..48)" in _row(rendered, "gpuPools.<name>.timeSlicingReplicas")
    assert "one of: dev, staging, prod" in _row(rendered, "environment")
    assert "one of: aws, gcp, existing" in _row(rendered, "cloud")
    assert "list of CIDR" in _row(rendered, "aws.apiServerAllowedCidrs")
    assert "map of pool name -> GPU pool" in _row(rendered, "gpuPools")
    # tier defaults per column, cloud defaults named per cloud, the derived cluster name
    assert "| `2` | `2` | `3` |" in _row(rendered, "aws.zoneCount")
    assert "aws: `m7i.xlarge`; gcp: `e2-standard-4`" in _row(rendered, "systemPool.machineType")
    assert "`gpu-<stack>`" in _row(rendered, "clusterName")
    assert "| required | required | required |" in _row(rendered, "aws.region")


# --- Pulumi.yaml declarations agree with the models -----------------------------------------


@pytest.mark.parametrize("key", DECLARED)
@pytest.mark.parametrize("cloud", STACK_MODELS)
def test_declared_key_is_a_top_level_field_of_the_same_type(key: str, cloud: str) -> None:
    info = _top_level_field(STACK_MODELS[cloud], key)
    assert info is not None, f"Pulumi.yaml declares {key!r}, which the {cloud} stack model does not have"
    assert DECLARED[key].get("type") == _pulumi_type(info.annotation), (
        f"{key}: Pulumi.yaml says {DECLARED[key].get('type')!r}, the model needs {_pulumi_type(info.annotation)!r}"
    )


@pytest.mark.parametrize("key", [k for k, decl in DECLARED.items() if "default" in decl])
def test_a_declared_default_is_written_nowhere_else(key: str) -> None:
    for cloud, model in STACK_MODELS.items():
        info = _top_level_field(model, key)
        assert info is not None and info.is_required(), (
            f"{key} has a default both in Pulumi.yaml and on the {cloud} model field; keep one"
        )
        for tier in TIER_DEFAULTS:
            assert key not in with_defaults({}, tier, cloud, "any"), (
                f"{key} has a default both in Pulumi.yaml and in the {tier}/{cloud} defaults of infra/program/settings.py"
            )


@pytest.mark.parametrize("stack", stack_names())
def test_declared_defaults_validate_on_every_shipped_stack(stack: str) -> None:
    load_settings(stack_input(stack), stack)  # the stack as shipped, declared defaults applied
    for key, decl in DECLARED.items():
        if "default" not in decl:
            continue
        # Force the declared default even where the stack overrides it: it must hold on every cloud.
        settings = load_settings(stack_input(stack, {key: decl["default"]}), stack)
        info_name = next(n for n, i in type(settings).model_fields.items() if (i.alias or n) == key)
        assert str(getattr(settings, info_name)) == str(decl["default"])
