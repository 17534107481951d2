"""The configuration reference (docs/configuration.md), generated from the settings models.

Every row comes from walking the pydantic stack models in infra/program/settings.py: the key path from the
field aliases, the type from the annotation and its ge/le/min_length/pattern metadata, the clouds
from which stack model has the field, the description from `Field(description=...)`. Defaults are
read from the same places the program takes them: `settings.with_defaults` (tier and cloud tables,
the derived cluster name), the fields' own defaults, and the `config:` block of Pulumi.yaml. So the
document cannot drift from the code; tests/test_config_reference.py fails when the file is stale.

    python -m infra.tooling.config_reference            # print the reference
    infra/run config-reference --write    # rewrite docs/configuration.md
"""

from __future__ import annotations

import argparse
import re
import types
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import (
    Annotated,
    Any,
    Literal,
    Mapping,
    Optional,
    Union,
    get_args,
    get_origin,
)

import yaml
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from components.gpu_catalog import GPU_TYPES
from infra.program.settings import (
    GPU_POOL_TIER_DEFAULTS,
    PROJECT,
    StackSettings,
    Tier,
    with_defaults,
)
from infra.program.stack_config import ROOT, project_declarations

OUTPUT = ROOT / "docs" / "configuration.md"
TIERS: tuple[str, ...] = get_args(Tier)

# Placeholders in key paths, as the reference writes them: a map entry (a pool name) and a list item.
MAP_ENTRY = "<name>"
LIST_ITEM = "[]"
# Stands in for the stack name when asking with_defaults for the derived defaults (`gpu-<stack>`).
STACK_PLACEHOLDER = "<stack>"

REQUIRED = "required"
BY_KEY = "by key"  # a block whose keys all have defaults: see the rows below it
UNSET = "unset"  # optional and off when not set (the field default is None)

_MISSING = object()

# The map DEFAULT_GPU_POOLS fills; the reference lists its default entries in their own section.
POOLS_KEY = "gpuPools"


# --- the stack models -----------------------------------------------------------------------


def stack_models() -> dict[str, type[BaseModel]]:
    """cloud -> stack model, read from the discriminated union the program validates against."""
    union, discriminator = get_args(StackSettings)[0], get_args(StackSettings)[1].discriminator
    models: dict[str, type[BaseModel]] = {}
    for model in get_args(union):
        (cloud,) = get_args(model.model_fields[discriminator].annotation)
        models[cloud] = model
    return models


def _without_none(annotation: Any) -> Any:
    """Optional[X] -> X; any other annotation unchanged."""
    if get_origin(annotation) in (Union, types.UnionType):
        rest = [arg for arg in get_args(annotation) if arg is not type(None)]
        if len(rest) == 1:
            return rest[0]
    return annotation


def _split_annotated(annotation: Any) -> tuple[Any, list[Any]]:
    """Annotated[X, *meta] -> (X, meta); nested Optional and Annotated layers are unwrapped too."""
    metadata: list[Any] = []
    annotation = _without_none(annotation)
    while get_origin(annotation) is Annotated:
        annotation, *extra = get_args(annotation)
        metadata.extend(extra)
        annotation = _without_none(annotation)
    return annotation, metadata


def _field(model: type[BaseModel], alias: str) -> FieldInfo:
    return next(info for name, info in model.model_fields.items() if (info.alias or name) == alias)


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


Holds = Literal["value", "block", "map of blocks", "list of blocks"]
# How a path continues into the model a field holds: `systemPool.minSize`, `gpuPools.<name>.maxSize`,
# `gpuPools.<name>.taints[].key`.
_STEP: Mapping[str, str] = {"block": ".", "map of blocks": f".{MAP_ENTRY}.", "list of blocks": f"{LIST_ITEM}."}


def holds(info: FieldInfo) -> tuple[Holds, Optional[type[BaseModel]]]:
    """What a field holds: a plain value, a block (nested model), or a map or list of blocks."""
    base, _ = _split_annotated(info.annotation)
    if _is_model(base):
        return "block", base
    origin, args = get_origin(base), get_args(base)
    if origin is dict and _is_model(_split_annotated(args[1])[0]):
        return "map of blocks", _split_annotated(args[1])[0]
    if origin in (tuple, list) and args and _is_model(_split_annotated(args[0])[0]):
        return "list of blocks", _split_annotated(args[0])[0]
    return "value", None


def walk(model: type[BaseModel], prefix: str = "") -> Iterator[tuple[str, FieldInfo]]:
    """Every key of `model`, nested blocks included, as (dotted path, field), parents first."""
    for name, info in model.model_fields.items():
        path = f"{prefix}{info.alias or name}"
        yield path, info
        kind, inner = holds(info)
        if inner is not None:
            yield from walk(inner, f"{path}{_STEP[kind]}")


# --- readable types -------------------------------------------------------------------------

_ACRONYMS = {"cidr": "CIDR", "gpu": "GPU", "dns": "DNS"}
# Per-cloud variants of one concept (ManagedGpuPool, ExistingGpuPool) read as the concept.
_VARIANT_WORDS = {"managed", "existing"}


def _words(name: str) -> str:
    return " ".join(_ACRONYMS.get(word, word) for word in name.lower().split())


def _model_noun(model: type[BaseModel]) -> str:
    words = [w.lower() for w in re.findall(r"[A-Z][a-z0-9]*", model.__name__)]
    while len(words) > 1 and words[0] in _VARIANT_WORDS:
        words.pop(0)
    return _words(" ".join(words))


def _validator_noun(metadata: list[Any]) -> Optional[str]:
    """A string checked by `_check_cidr` is a "CIDR", by `_check_pool_name` a "pool name"."""
    for item in metadata:
        func = getattr(item, "func", None)
        if func is not None and func.__name__.startswith("_check_"):
            return _words(func.__name__.removeprefix("_check_").replace("_", " "))
    return None


def _constraint(metadata: list[Any], attribute: str) -> Any:
    for item in metadata:
        value = getattr(item, attribute, None)
        if value is not None:
            return value
    return None


def _number_bounds(metadata: list[Any]) -> str:
    low = _constraint(metadata, "ge")
    high = _constraint(metadata, "le")
    if low is not None and high is not None:
        return f" ({low}..{high})"
    if low is not None:
        return f" (>= {low})"
    if high is not None:
        return f" (<= {high})"
    return ""


def _length_bounds(metadata: list[Any]) -> str:
    shortest = _constraint(metadata, "min_length")
    longest = _constraint(metadata, "max_length")
    parts = ([f"at least {shortest}"] if shortest else []) + ([f"at most {longest}"] if longest else [])
    return f" ({', '.join(parts)})" if parts else ""


def literal_values(annotation: Any) -> Optional[tuple[Any, ...]]:
    base, _ = _split_annotated(annotation)
    return get_args(base) if get_origin(base) is Literal else None


def describe_type(annotation: Any, metadata: tuple[Any, ...] | list[Any] = (), nested: bool = False) -> str:
    """A readable type: `integer (1..48)`, `one of: dev, staging, prod`, `list of CIDR`, ..."""
    base, inner_metadata = _split_annotated(annotation)
    metadata = [*inner_metadata, *metadata]
    origin, args = get_origin(base), get_args(base)
    if origin is Literal:
        return "one of: " + ", ".join(str(arg) for arg in args)
    if base is bool:
        return "boolean"
    if base is int:
        return "integer" + _number_bounds(metadata)
    if base is str:
        pattern = _constraint(metadata, "pattern")
        return (_validator_noun(metadata) or "string") + (f" matching `{pattern}`" if pattern else "")
    if origin in (tuple, list):
        return f"list of {describe_type(args[0], nested=True)}" + _length_bounds(metadata)
    if origin is dict:
        return f"map of {describe_type(args[0], nested=True)} -> {describe_type(args[1], nested=True)}"
    if _is_model(base):
        return _model_noun(base) if nested else "object"
    return getattr(base, "__name__", str(base))


# --- defaults -------------------------------------------------------------------------------


def _inline(value: Any) -> str:
    """A default as it would be written in a stack file (YAML flow style), in a code span."""
    if isinstance(value, BaseModel):
        value = value.model_dump(by_alias=True, mode="json")
    elif isinstance(value, (tuple, list)):
        value = [v.model_dump(by_alias=True, mode="json") if isinstance(v, BaseModel) else v for v in value]
    text = yaml.safe_dump(value, default_flow_style=True, sort_keys=False, width=10**6).strip()
    return f"`{text.removesuffix('...').strip()}`"


def _lookup(document: Mapping[str, Any], path: str) -> Any:
    current: Any = document
    for part in path.split("."):
        if not isinstance(current, Mapping) or part not in current:
            return _MISSING
        current = current[part]
    return current


def _probe(model: type[BaseModel]) -> dict[str, Any]:
    """A stack that declares one empty entry in every map of blocks (one pool named `<name>`), so
    with_defaults shows the defaults it merges under each entry (GPU_POOL_TIER_DEFAULTS)."""
    probe: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        if holds(info)[0] == "map of blocks":
            probe[info.alias or name] = {MAP_ENTRY: {}}
    return probe


def _leaf_default(path: str, info: FieldInfo, merged: Mapping[str, Any], probed: Mapping[str, Any]) -> str:
    # Precedence as in the program: tier/cloud tables and derived values (with_defaults), then
    # the field's own default, then the default Pulumi.yaml declares (top-level keys only).
    value = _lookup(probed if MAP_ENTRY in path else merged, path)
    if value is not _MISSING:
        if isinstance(value, Mapping) and value and holds(info)[0] == "map of blocks":
            # Only DEFAULT_GPU_POOLS gives a map of blocks a default: name the entries, detail below.
            return ", ".join(f"`{name}`" for name in value) + " ([default pools](#default-gpu-pools))"
        return _inline(value)
    if not info.is_required():
        value = info.get_default(call_default_factory=True, validated_data={})
        return UNSET if value is None else _inline(value)
    declared = project_declarations().get(path, {})
    if "." not in path and "default" in declared:
        return _inline(declared["default"])
    return REQUIRED


def defaults_of(model: type[BaseModel], tier: str, cloud: str) -> dict[str, str]:
    """path -> the default cell for one cloud's stack model in one tier."""
    merged = with_defaults({}, tier, cloud, STACK_PLACEHOLDER)
    probed = with_defaults(_probe(model), tier, cloud, STACK_PLACEHOLDER)
    fields = dict(walk(model))
    cells = {path: _leaf_default(path, info, merged, probed) for path, info in fields.items()}
    # An optional block (default None) is unset until given, whatever its keys require then.
    optional = {
        path
        for path, info in fields.items()
        if holds(info)[0] == "block"
        and not info.is_required()
        and info.get_default(call_default_factory=True, validated_data={}) is None
    }
    for path, info in fields.items():
        if holds(info)[0] == "block":
            # A block is required when a key inside it is (keys in maps or lists of it, or in an optional block
            # inside it, do not count).
            inside = [
                cells[p]
                for p in fields
                if p.startswith(f"{path}.")
                and MAP_ENTRY not in p[len(path) :]
                and LIST_ITEM not in p[len(path) :]
                and not any(p.startswith(f"{o}.") for o in optional if o.startswith(f"{path}."))
            ]
            cells[path] = UNSET if path in optional else REQUIRED if REQUIRED in inside else BY_KEY
    return cells


# --- rows -----------------------------------------------------------------------------------


@dataclass
class Row:
    path: str
    fields: dict[str, FieldInfo] = field(default_factory=dict)  # cloud -> field, for clouds that have the key
    defaults: dict[str, dict[str, str]] = field(default_factory=dict)  # tier -> cloud -> cell

    @property
    def holds(self) -> Holds:
        return holds(next(iter(self.fields.values())))[0]

    @property
    def block(self) -> str:
        """The top-level key whose table the row goes in ("" for top-level values)."""
        head = re.split(r"[.\[]", self.path, maxsplit=1)[0]
        return "" if head == self.path and self.holds == "value" else head


def _per_cloud(cells: Mapping[str, str], separator: str = "; ") -> str:
    """One text when every cloud agrees, else `aws, gcp: x; existing: y`."""
    groups: dict[str, list[str]] = {}
    for cloud, text in cells.items():
        groups.setdefault(text, []).append(cloud)
    if len(groups) == 1:
        return next(iter(groups))
    return separator.join(f"{', '.join(clouds)}: {text}" for text, clouds in groups.items())


def _type_cell(row: Row) -> str:
    literals = {cloud: literal_values(info.annotation) for cloud, info in row.fields.items()}
    if len(row.fields) > 1 and all(literals.values()):
        # The discriminator (`cloud`) is one literal per model: together they are its choices.
        values = list(dict.fromkeys(v for vs in literals.values() for v in vs))  # type: ignore[union-attr]
        return "one of: " + ", ".join(str(v) for v in values)
    return _per_cloud({cloud: describe_type(info.annotation, info.metadata) for cloud, info in row.fields.items()})


def _description_cell(row: Row) -> str:
    declared = project_declarations().get(row.path, {}).get("description", "")
    texts = {}
    for cloud, info in row.fields.items():
        inner = holds(info)[1]
        texts[cloud] = info.description or declared or (inner.__doc__ if inner else "") or ""
    return _per_cloud(texts, separator=" ")  # descriptions are sentences: they end with a period


def collect_rows() -> list[Row]:
    rows: dict[str, Row] = {}
    for cloud, model in stack_models().items():
        for path, info in walk(model):
            rows.setdefault(path, Row(path)).fields[cloud] = info
        for tier in TIERS:
            for path, cell in defaults_of(model, tier, cloud).items():
                rows[path].defaults.setdefault(tier, {})[cloud] = cell
    return list(rows.values())


def _ordered_blocks(rows: list[Row]) -> dict[str, list[Row]]:
    """Top level first (keys Pulumi.yaml declares lead), then each cloud's own block, then the
    shared blocks: a reader takes their cloud's block, then what every stack has."""
    blocks: dict[str, list[Row]] = {}
    for row in rows:
        blocks.setdefault(row.block, []).append(row)
    declared = list(project_declarations())
    top = blocks.pop("", [])
    top.sort(key=lambda r: declared.index(r.path) if r.path in declared else len(declared))
    clouds = list(stack_models())
    heads = {name: next(r for r in members if r.path == name) for name, members in blocks.items()}
    order = sorted(
        blocks,
        key=lambda name: clouds.index(next(iter(heads[name].fields))) if len(heads[name].fields) == 1 else len(clouds),
    )
    return {"": top, **{name: blocks[name] for name in order}}


# --- rendering ------------------------------------------------------------------------------


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _table(header: list[str], lines: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(_cell(c) for c in line) + " |" for line in lines]
    return out


def full_key(path: str) -> str:
    return f"{PROJECT}:{path}"


def key_table(rows: list[Row]) -> list[str]:
    lines = [
        [
            f"`{full_key(row.path)}`",
            _type_cell(row),
            ", ".join(row.fields),
            *(_per_cloud(row.defaults[tier]) for tier in TIERS),
            _description_cell(row),
        ]
        for row in rows
    ]
    return _table(["Key", "Type", "Clouds", *TIERS, "Description"], lines)


def _intro() -> list[str]:
    example_tier = TIERS[0]
    pool_defaults = ", ".join(f"`{k}: {v}`" for k, v in GPU_POOL_TIER_DEFAULTS[example_tier].items())
    return [
        "# Configuration reference",
        "",
        "<!-- Generated by `infra/run config-reference --write` from infra/program/settings.py, Pulumi.yaml",
        "     and components/gpu_catalog.py. Do not edit: tests/test_config_reference.py fails when stale. -->",
        "",
        f"A stack is configured by the `{PROJECT}:*` keys of `stacks/Pulumi.<stack>.yaml`. They flow one way:",
        "",
        "1. **Stack file.** What the stack sets always wins. Keys declared with a default in `Pulumi.yaml`",
        "   are filled in by the Pulumi CLI when the stack does not set them.",
        "2. **Tier and cloud defaults.** `environment` picks a tier (`TIER_DEFAULTS` in infra/program/settings.py),",
        "   `cloud` picks cloud defaults (`CLOUD_DEFAULTS`); tier beats cloud. They are merged under the",
        "   stack's keys, block by block, so a stack can set one key of a block and keep the rest.",
        "3. **Validated model.** The result is validated into frozen pydantic models; keys nobody set take",
        "   the model's own default, or are reported as missing.",
        "",
        "Unknown keys are errors, never ignored: the message names the full key and lists the keys",
        "allowed there. Every problem in a stack file is reported at once, before any resource exists.",
        "",
        "**GPU pools.** A managed (aws, gcp) stack without `gpuPools` gets the tier's",
        "[default pools](#default-gpu-pools). A stack that sets `gpuPools` *replaces* that whole map, so",
        "a default pool it does not repeat is dropped. The tier's pool defaults (`GPU_POOL_TIER_DEFAULTS`)",
        f"are then merged under *every* pool, its own or default: on {example_tier}, a pool written as",
        f"just a `gpuType` gets {pool_defaults}.",
        "",
        "**Reading the table.** Keys are written as in error messages and `pulumi config set --path`:",
        f"`{MAP_ENTRY}` is an entry of a map (a pool name), `{LIST_ITEM}` an item of a list. The dev, staging",
        f"and prod columns give the default in that tier: `{REQUIRED}` means the stack must set it,",
        f"`{BY_KEY}` marks a block whose keys all have defaults, `{UNSET}` an optional key that is off",
        "unless set. Where clouds differ, each cell names the cloud.",
    ]


def _in_field_order(model: type[BaseModel], values: Mapping[str, Any]) -> dict[str, Any]:
    order = [info.alias or name for name, info in model.model_fields.items()]
    return dict(sorted(values.items(), key=lambda item: order.index(item[0]) if item[0] in order else len(order)))


def _default_pools_section() -> list[str]:
    lines: list[list[str]] = []
    for tier in TIERS:
        # The pools as the program gets them: DEFAULT_GPU_POOLS with the tier's pool defaults merged.
        per_cloud: dict[str, dict[str, Any]] = {}
        for cloud, model in stack_models().items():
            pools = with_defaults({}, tier, cloud, STACK_PLACEHOLDER).get(POOLS_KEY)
            if isinstance(pools, Mapping):
                pool_model = holds(_field(model, POOLS_KEY))[1]
                assert pool_model is not None
                per_cloud[cloud] = {name: _in_field_order(pool_model, pool) for name, pool in pools.items()}
        names = dict.fromkeys(name for pools in per_cloud.values() for name in pools)
        for name in names:
            settings = {cloud: _inline(pools[name]) for cloud, pools in per_cloud.items() if name in pools}
            lines.append([tier, f"`{name}`", ", ".join(settings), _per_cloud(settings)])
    return [
        "## Default GPU pools",
        "",
        "What a managed stack without `gpuPools` gets, with the tier's pool defaults merged in; keys not",
        "shown take the defaults in the table above. Setting `gpuPools` replaces these pools.",
        "",
        *_table(["Tier", "Pool", "Clouds", "Settings"], lines),
    ]


def _catalog_section() -> list[str]:
    clouds = [c for c in stack_models() if any(gpu.offered_on(c) for gpu in GPU_TYPES.values())]
    lines = []
    for name, gpu in GPU_TYPES.items():
        cells = []
        for cloud in clouds:
            machines = gpu.machines(cloud)
            cells.append(
                "; ".join(f"{count}: " + ", ".join(f"`{m}`" for m in types_) for count, types_ in machines.items())
                or "not offered"
            )
        lines.append([f"`{name}`", f"{gpu.memory_gib} GiB", *cells])
    return [
        "## GPU catalog",
        "",
        "The `gpuType` values (components/gpu_catalog.py) and, per cloud, the default machine types for",
        "each `gpuCount` (GPUs per node: machine types). A pool's `machineTypes` overrides the default; an",
        "AWS spot pool uses every listed instance type, in order of preference.",
        "",
        *_table(["GPU type", "Memory", *(f"{cloud} (GPUs: machine types)" for cloud in clouds)], lines),
    ]


def render_reference() -> str:
    out = _intro()
    out += ["", "## Keys"]
    for block, rows in _ordered_blocks(collect_rows()).items():
        if not block:
            title = "Top level"
        elif rows[0].holds == "map of blocks":
            title = f"`{full_key(block)}.{MAP_ENTRY}`"
        else:
            title = f"`{full_key(block)}`"
        out += ["", f"### {title}", "", *key_table(rows)]
    out += ["", *_default_pools_section(), "", *_catalog_section()]
    return "\n".join(out) + "\n"


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(description="Print the configuration reference, or write docs/configuration.md.")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true", help=f"write {OUTPUT.relative_to(ROOT)} instead of printing")
    mode.add_argument("--check", action="store_true", help=f"exit 1 when {OUTPUT.relative_to(ROOT)} is out of date")
    args = parser.parse_args(argv)
    text = render_reference()
    if args.check:
        # What tests/test_config_reference.py checks, as a command for the docs and for a pre-commit hook.
        if not OUTPUT.exists() or OUTPUT.read_text() != text:
            raise SystemExit(
                f"{OUTPUT.relative_to(ROOT)} is out of date: run `infra/run config-reference --write`"
            )
        print(f"{OUTPUT.relative_to(ROOT)} is current")
    elif args.write:
        OUTPUT.parent.mkdir(parents=True, exist_ok=True)
        OUTPUT.write_text(text)
        print(f"wrote {OUTPUT.relative_to(ROOT)}")
    else:
        print(text, end="")


if __name__ == "__main__":
    main()
