"""Command-line options generated from the typed settings.

Every flag of a setting is built from its dataclass field (:mod:`ptpm_tf.settings`): the
name (``--field-name`` or the field's ``flag``), the type, the choices, the lower bound and
the help all come from the one declaration, and so does the default. Head settings are
offered for every model; a flag the chosen model does not have is an error naming the
models that do (:func:`head_overrides`).
"""
from __future__ import annotations

import argparse
import dataclasses
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence

from ptpm_tf.settings import field_types, flag_name


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (the usage is in ``--help``).

    Arguments no parser knows are reported by the innermost (sub)command that parsed the
    line, so the error points at the ``--help`` that lists that command's flags
    (``ptpm-tf export --help``), not at the top level's."""

    #: the parser of the (sub)command that parsed last: the innermost one on the line
    _innermost: Optional["Parser"] = None

    def error(self, message):
        from ptpm_tf.data.dataset import one_line
        self.exit(2, f"{self.prog}: error: {one_line(message)} (see {self.prog} --help)\n")

    def parse_known_args(self, args=None, namespace=None):
        Parser._innermost = self  # a subcommand's parser runs inside its parent's
        return super().parse_known_args(args, namespace)

    def parse_args(self, args=None, namespace=None):
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            Parser._innermost.error(f"unrecognized arguments: {' '.join(extras)}")
        return parsed


def int_at_least(low: int, what: Optional[str] = None) -> Callable[[str], int]:
    """An argparse type: an integer >= ``low``, else a one-line error saying ``what``."""
    what = what or ("a positive integer" if low == 1 else f"an integer >= {low}")

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"expected {what}, got {value}")
        return value
    return parse


positive_int = int_at_least(1)
non_negative_int = int_at_least(0)


def csv_list(text: str, cast: Callable[[str], Any] = str) -> list:
    """``"a,b,c"`` -> ``[cast(a), cast(b), cast(c)]`` (empty items skipped)."""
    try:
        return [cast(x.strip()) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"expected a comma-separated list, got {text!r}") from None


def _tuple_of(cast: Callable[[str], Any], length: Optional[int], what: str):
    """An argparse type: a comma-separated tuple of ``cast`` values (of ``length``)."""
    def parse(text: str) -> tuple:
        if length is None and text.strip().lower() in ("", "none"):
            return ()
        try:
            values = tuple(cast(x) for x in text.split(","))
        except ValueError:
            values = ()
        if not values or (length is not None and len(values) != length):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return values
    return parse


def _default_text(value: Any) -> str:
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    return str(value)


def add_field(group, field: dataclasses.Field, kind: type, *, default: Any,
              help: Optional[str] = None) -> None:
    """One flag for a settings field (``default`` None: the field was not given)."""
    meta = field.metadata
    kw: Dict[str, Any] = {"dest": field.name, "default": default,
                          "help": help if help is not None else meta["help"]}
    if kind is bool:
        kw["action"] = argparse.BooleanOptionalAction
    elif kind is int:
        low = meta.get("low")
        kw["type"] = int_at_least(int(low)) if low is not None else int
    elif kind is float:
        kw["type"] = float
    elif kind is tuple:
        sample = field.default[0] if field.default else 0.0
        cast = type(sample) if isinstance(sample, (int, str)) else float
        length = len(field.default) if field.name == "split" else None
        what = (f"{length} comma-separated numbers" if length else
                "comma-separated numbers")
        kw["type"] = _tuple_of(cast, length, what)
        kw["metavar"] = ",".join(["X"] * (length or 2)) if length else "X,Y,..."
    if meta.get("choices"):
        kw["choices"] = meta["choices"]
    elif kind is not bool and "metavar" not in kw:
        kw["metavar"] = flag_name(field).lstrip("-").replace("-", "_").upper()
    group.add_argument(flag_name(field), **kw)


def add_settings(group, cls, *, skip: Iterable[str] = (), defaults: Optional[Dict] = None
                 ) -> List[str]:
    """Flags for the settings of dataclass ``cls`` (its defaults, or ``defaults``' values,
    shown in the help); returns the ``dest`` names added."""
    types, skip, added = field_types(cls), set(skip), []
    defaults = defaults or {}
    for field in dataclasses.fields(cls):
        if field.name in skip or not field.metadata:
            continue
        default = defaults.get(field.name, field.default)
        shown = f" (default: {_default_text(default)})" if default is not None else ""
        add_field(group, field, types[field.name][0], default=default,
                  help=field.metadata["help"] + shown)
        added.append(field.name)
    return added


def section_values(args: argparse.Namespace, cls) -> Dict[str, Any]:
    """The values of ``cls``' fields that ``args`` has."""
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(cls)
            if hasattr(args, f.name)}


def add_head_settings(parser: argparse.ArgumentParser) -> None:
    """One argument group per head family, each flag defaulting to "not given" (the model,
    the preset and the family decide); a setting shared by families gets one flag."""
    from ptpm_tf.config import DEFAULT_PRESET, PRESETS
    from ptpm_tf.heads import MODELS

    g = parser.add_argument_group("head settings")
    g.add_argument("--preset", choices=tuple(PRESETS), default=DEFAULT_PRESET,
                   help="best (default): the settings that won on the validation split "
                        "(a tree over watch time / duration, median decoder, no L_reg / "
                        "L_var; BENCHMARKS.md); paper: the paper's definitions (a tree over "
                        "seconds, mean decoder, L_reg and L_var). The flags below override "
                        "either")
    seen = set()
    for cls in dict.fromkeys(spec.config for spec in MODELS.values()):
        types = field_types(cls)
        fields = [f for f in dataclasses.fields(cls) if f.name not in seen]
        if not fields:
            continue
        names = {f.name for f in fields}
        users = [m for m, spec in MODELS.items()
                 if names & {f.name for f in dataclasses.fields(spec.config)}]
        group = parser.add_argument_group(f"{'/'.join(users)} settings")
        for field in fields:
            seen.add(field.name)
            add_field(group, field, types[field.name][0], default=None,
                      help=f"{field.metadata['help']} ({_head_defaults(field.name)})")


def _head_defaults(name: str) -> str:
    """``default: X`` of a head setting, per model where models differ, and what the
    other presets change."""
    from ptpm_tf.config import DEFAULT_PRESET, PRESETS
    from ptpm_tf.heads import MODELS, head_config, head_fields

    def by_model(preset: str) -> Dict[str, str]:
        return {m: _default_text(dataclasses.asdict(head_config(m, preset))[name])
                for m in MODELS if name in head_fields(m)}

    def text(values: Dict[str, str]) -> str:
        if len(set(values.values())) == 1:
            return next(iter(values.values()))
        return ", ".join(f"{m} {v}" for m, v in values.items())

    shown = by_model(DEFAULT_PRESET)
    out = f"default: {text(shown)}"
    for preset in PRESETS:
        other = by_model(preset)
        if other != shown:
            out += f"; --preset {preset}: {text(other)}"
    return out


def head_overrides(args: argparse.Namespace, model: str) -> Dict[str, Any]:
    """The head settings given on the command line; one ``model`` does not have is an
    error naming the models that have it."""
    from ptpm_tf.heads import MODELS, head_fields
    given: Dict[str, Any] = {}
    mine = set(head_fields(model))
    for name, spec in MODELS.items():
        for field in dataclasses.fields(spec.config):
            value = getattr(args, field.name, None)
            if value is None or field.name in given:
                continue
            if field.name not in mine:
                users = [m for m, s in MODELS.items()
                         if field.name in {f.name for f in dataclasses.fields(s.config)}]
                raise ValueError(f"{flag_name(field)} applies to {', '.join(users)}, "
                                 f"not to {model}")
            given[field.name] = value
    return given


def experiment_config(args: argparse.Namespace, model: str, **changes):
    """The :class:`~ptpm_tf.config.ExperimentConfig` of a command's flags."""
    from ptpm_tf.config import SECTIONS, ExperimentConfig
    sections = {name: cls(**section_values(args, cls)) for name, cls in SECTIONS.items()}
    config = ExperimentConfig(model=model, preset=args.preset, seed=args.seed,
                              head=head_overrides(args, model), **sections)
    return config.replace(**changes) if changes else config


def model_names(values: Sequence[str]) -> list:
    """``--name ptpm,tpm`` and ``--name ptpm --name tpm`` alike; order kept, no repeats."""
    names = [n for v in values for n in csv_list(v)]
    return list(dict.fromkeys(names))
