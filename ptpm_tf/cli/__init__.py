"""``ptpm-tf``: the command line, one module per command.

Exit status 0 on success. Every expected failure (bad data, bad flags, a bad run
directory, an unreadable file) is one line on stderr, naming the file, row and column
where one applies, and status 2; only a bug prints a traceback. ``--debug`` (before or
after the command) also prints the traceback of an expected failure.

Nothing here imports TensorFlow before the flags are parsed (``--help`` answers at once);
:func:`main` then loads it with its native start-up lines muted.
"""
from __future__ import annotations

import argparse
import os
import sys
import traceback
from typing import List, Optional

from ptpm_tf.cli import benchmark, data, demo, evaluate, serving, simulate, train
from ptpm_tf.cli.options import Parser

#: the command modules, in the order ``--help`` lists them; each has ``add_parser(sub)``
COMMANDS = (simulate, train, evaluate, demo, benchmark, data, serving)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="ptpm-tf",
        description="PTPM watch-time prediction: train, evaluate and compare tree-based "
                    "models on the built-in simulator or real datasets.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(sub)
    _add_debug(parser)
    return parser


def _add_debug(parser: argparse.ArgumentParser) -> None:
    """``--debug`` on ``parser`` and every subcommand's parser (so it goes anywhere)."""
    parser.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="on an error, also print its traceback")
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in dict.fromkeys(action.choices.values()):
                _add_debug(child)


def _import_tensorflow_quietly(strategy: Optional[str] = None) -> None:
    """Import TensorFlow with the native stderr muted: its C++ start-up lines (oneDNN,
    CUDA probing) ignore ``TF_CPP_MIN_LOG_LEVEL`` and would bury the CLI's one-line
    errors. Python-level import errors still raise after stderr is restored.

    ``strategy='multi_worker'`` creates the MultiWorkerMirroredStrategy here, before the
    device set-up: TensorFlow accepts it only before its runtime has started."""
    import ptpm_tf  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            try:
                import tensorflow as tf
                if strategy == "multi_worker":
                    from ptpm_tf.distribute import make_strategy
                    make_strategy(strategy)
                tf.config.list_logical_devices()  # device set-up logs its probing too
            finally:
                os.dup2(saved, 2)
    finally:
        os.close(saved)


#: what an expected failure raises: bad data or settings (``DataError`` and
#: ``ConfigError`` are ``ValueError``s), and files that cannot be read or written
EXPECTED_ERRORS = (ValueError, OSError)


def _fail(err: BaseException, debug: bool) -> int:
    """Report an expected failure: its traceback with ``--debug``, then one line; 2."""
    from ptpm_tf.data.dataset import one_line
    if debug:
        traceback.print_exception(err)
    text = str(err) if not isinstance(err, OSError) or not err.filename else \
        f"{err.strerror or type(err).__name__}: {err.filename}"
    print(f"ptpm-tf: error: {one_line(text or type(err).__name__)}", file=sys.stderr)
    return 2


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    debug = getattr(args, "debug", False)
    if getattr(args, "before_tensorflow", None):  # a command's TensorFlow settings
        args.before_tensorflow(args)
    try:
        _import_tensorflow_quietly(getattr(args, "strategy", None))
    except ValueError as err:  # e.g. --strategy multi_worker without TF_CONFIG
        return _fail(err, debug)
    try:
        return args.func(args)
    except EXPECTED_ERRORS as err:
        return _fail(err, debug)
