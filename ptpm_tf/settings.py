"""Typed settings: dataclass fields that carry their own help, choices and bounds.

The experiment's sections (:mod:`ptpm_tf.config`) and every head family's settings
(``Head.Config``) are frozen dataclasses whose fields are declared with :func:`setting`.
:func:`validate` checks an instance against that metadata, and the command line builds its
flags from it (:mod:`ptpm_tf.cli.options`): a default, a choice list or a bound is written
once, where the setting is declared.
"""
from __future__ import annotations

import dataclasses
import math
import numbers
import typing
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple


class ConfigError(ValueError):
    """A setting no run can use (the CLI prints it as one line, exit status 2)."""


def setting(default: Any, help: str, *, choices: Optional[Sequence[Any]] = None,
            low: Optional[float] = None, above: Optional[float] = None,
            flag: Optional[str] = None) -> Any:
    """A dataclass field with what validation and the CLI need: ``choices``; ``low`` (an
    inclusive lower bound) or ``above`` (an exclusive one); ``flag``, the command-line name
    when it is not ``--field-name``."""
    meta = {"help": help, "choices": tuple(choices) if choices else None, "low": low,
            "above": above, "flag": flag}
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def same_as(cls, name: str, **changes) -> Any:
    """The field ``name`` of settings class ``cls`` again (its default and metadata), for
    another settings class that has the same setting; ``changes`` replace its ``default``
    or metadata entries (a deliberately different default is written where it differs)."""
    field = next(f for f in dataclasses.fields(cls) if f.name == name)
    default = changes.pop("default", field.default)
    meta = {**field.metadata, **changes}
    return setting(default, meta.pop("help"), **{k: v for k, v in meta.items()})


def flag_name(field: dataclasses.Field) -> str:
    """``--field-name``, or the field's own ``flag``."""
    return field.metadata.get("flag") or "--" + field.name.replace("_", "-")


def _base_type(annotation) -> Tuple[type, bool]:
    """(the value type, whether None is allowed) of a field annotation."""
    hint = annotation
    optional = False
    if typing.get_origin(hint) is typing.Union:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        optional = len(args) < len(typing.get_args(hint))
        hint = args[0]
    origin = typing.get_origin(hint)
    return (origin or hint), optional


def field_types(cls) -> Dict[str, Tuple[type, bool]]:
    hints = typing.get_type_hints(cls)
    return {f.name: _base_type(hints[f.name]) for f in dataclasses.fields(cls)}


def _check_value(field: dataclasses.Field, kind: type, optional: bool, value: Any) -> Any:
    """``value`` checked against its field (ints accepted for floats; a list for a
    tuple); returns it normalised."""
    name = flag_name(field).lstrip("-")
    meta = field.metadata
    if value is None:
        if optional:
            return None
        raise ConfigError(f"{name} must be set")
    if kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{name} must be true or false, got {value!r}")
    elif kind is int:
        low = meta.get("low")
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) \
                or (low is not None and value < low):
            bound = f" >= {low:g}" if low is not None else ""
            raise ConfigError(f"{name} must be an integer{bound}, got {value!r}")
        value = int(value)
    elif kind is float:
        low, above = meta.get("low"), meta.get("above")
        if isinstance(value, bool) or not isinstance(value, numbers.Real) \
                or not math.isfinite(value) or (low is not None and value < low) \
                or (above is not None and value <= above):
            bound = (f" >= {low:g}" if low is not None else
                     f" > {above:g}" if above is not None else "")
            raise ConfigError(f"{name} must be a finite number{bound}, got {value!r}")
        value = float(value)
    elif kind is str:
        if not isinstance(value, str):
            raise ConfigError(f"{name} must be a string, got {value!r}")
    elif kind is tuple:
        if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
            raise ConfigError(f"{name} must be a list, got {value!r}")
        value = tuple(value)
    choices = meta.get("choices")
    if choices and value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(map(str, choices))}, "
                          f"got {value!r}")
    return value


def validate(instance) -> None:
    """Check every field of a settings dataclass (types, choices, bounds), normalise the
    values in place, then run the class's own cross-field ``check`` if it has one."""
    types = field_types(type(instance))
    for f in dataclasses.fields(instance):
        if not f.metadata:  # a nested config, validated by its own class
            continue
        kind, optional = types[f.name]
        value = _check_value(f, kind, optional, getattr(instance, f.name))
        object.__setattr__(instance, f.name, value)
    check = getattr(type(instance), "check", None)
    if check is not None:
        check(instance)


def from_mapping(cls, values: Mapping[str, Any], where: str):
    """``cls(**values)``, with an unknown key a :class:`ConfigError` listing the known."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(f"{where} has no setting {', '.join(unknown)} "
                          f"(its settings: {', '.join(sorted(names))})")
    return cls(**values)


@dataclasses.dataclass(frozen=True)
class NoSettings:
    """The settings of a head that has none (the MSE regression)."""
