"""The command line's grammar: the commands, their flags, and the original script's flags as aliases.

Parsing only: what a command does with its arguments is `modal_jobs.cli`.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from modal_jobs.deadlines import CONNECT_SECONDS_ENV, STALL_SECONDS_ENV
from modal_jobs.errors import UsageError
from modal_jobs.model_list import DEFAULT_MODEL_LIST

OPERATIONS = {
    "download": "fetch the selected models, skipping what is complete and repairing what is not",
    "lock": "resolve what models.toml changed and write models.lock (--upgrade moves branches; --check compares)",
    "plan": "check the model list against the Hub and say what merging it would change (no target needed)",
    "list": "show every model of the list with its state on the target, and directories no entry owns",
    "verify": "re-hash every selected model against its manifest and models.lock; exit 1 if any is not ok",
    "clear": "remove the selected models (everything, with no selection); needs --yes",
    "path": "print the directory a reader loads a model from (on the volume, or --local-dir); exit 1 if not ready",
    "unlock": "break the Modal Volume's writer lease when the run holding it died (shows it; needs --yes)",
}

# The flags of the script this cache grew from (`modal run download_models.py --model-size 0.6B`,
# `--list-only`, `--clear`): people arrive with them in their shell history. Each stands for a command.
SEED_FLAGS = {"--list-only": "list", "--clear": "clear"}
SEED_HELP = """aliases of the commands, as the original download_models.py took them:
  --model-size LABEL [options]   download --model-size LABEL [options]
  --list-only [options]          list [options]
  --clear [options]              clear [options] (removes only with --yes)"""


def build_parser() -> argparse.ArgumentParser:
    parser = _OneLineErrors(
        prog="python -m modal_jobs",
        description="Keep Qwen3-TTS model weights cached, verified, on a Modal Volume or a local directory.",
        epilog=SEED_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="operation", required=True, metavar="COMMAND")
    for name, help_text in OPERATIONS.items():
        sub = commands.add_parser(name, help=help_text, description=help_text)
        if name == "path":
            add_path_arguments(sub)
            continue
        if name == "unlock":
            add_unlock_arguments(sub)
            continue
        target = _add_target_arguments(sub, name)
        _add_selection_arguments(sub)
        _add_command_options(sub, name)
        if name in ("download", "plan", "list", "lock"):
            _add_hub_arguments(sub)
        if name in ("download", "verify", "clear"):
            target.add_argument(
                "--lock-wait",
                type=_seconds,
                default=60.0,
                metavar="SECONDS",
                help="how long to wait for another run writing the same target, directory or volume (default 60)",
            )
        output = sub.add_argument_group("output")
        output.add_argument("--json", action="store_true", help="print the summary as JSON on stdout")
        output.add_argument("--summary-json", type=Path, metavar="FILE", help="also write the summary as JSON")
        output.add_argument("--summary-md", type=Path, metavar="FILE", help="also write the summary as Markdown")
    return parser


def _add_target_arguments(sub: argparse.ArgumentParser, name: str) -> argparse._ArgumentGroup:
    target = sub.add_argument_group("target")
    target.add_argument(
        "--local-dir", type=Path, metavar="DIR", help="work on this directory instead of the Modal Volume"
    )
    if name == "plan":
        target.add_argument(
            "--volume", action="store_true", help="also plan against the Modal Volume (needs Modal credentials)"
        )
        target.add_argument(
            "--base-model-list",
            "--base-catalog",
            type=Path,
            metavar="FILE",
            help="the model list before the change (a pull request's base branch); rows say what changed",
        )
    add_model_list(target, "the model list (default: ./models.toml)")
    return target


def add_model_list(group: argparse.ArgumentParser | argparse._ArgumentGroup, why: str) -> None:
    """`--model-list FILE` (`--catalog`, its older spelling), which every command reads."""
    group.add_argument("--model-list", "--catalog", type=Path, default=DEFAULT_MODEL_LIST, metavar="FILE", help=why)


def _add_selection_arguments(sub: argparse.ArgumentParser) -> None:
    selection = sub.add_argument_group("selection")
    selection.add_argument(
        "--model-size",
        action="append",
        default=[],
        metavar="LABEL",
        help="a size label from the model list, or both/all; shared models always come along",
    )
    selection.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="REPO_ID",
        help="a repo id from the model list (repeatable)",
    )


def _add_command_options(sub: argparse.ArgumentParser, name: str) -> None:
    """The options only some commands take: dry runs, pruning, confirmation, and models.lock."""
    if name in ("download", "clear"):
        sub.add_argument("--dry-run", action="store_true", help="say what would happen (the plan); change nothing")
    if name == "download":
        sub.add_argument(
            "--prune",
            action="store_true",
            help="also remove model directories the cache wrote for repos the list no longer names",
        )
    if name == "clear":
        sub.add_argument("--yes", action="store_true", help="really remove (without it, clear only refuses)")
    if name == "lock":
        sub.add_argument(
            "--upgrade",
            action="store_true",
            help="move branches and tags to their current commits: of the models --model-size/--model select, or all",
        )
        sub.add_argument(
            "--check",
            action="store_true",
            help="exit 1 when models.lock does not match models.toml; asks the Hub nothing",
        )
    if name in ("download", "plan", "verify", "list"):
        pinned = sub.add_argument_group("models.lock").add_mutually_exclusive_group()
        pinned.add_argument(
            "--locked", action="store_true", help="refuse (exit 2) when models.lock does not match models.toml"
        )
        pinned.add_argument("--frozen", action="store_true", help="use models.lock as it is, without checking it")


def _add_hub_arguments(sub: argparse.ArgumentParser) -> None:
    hub = sub.add_argument_group("hub")
    hub.add_argument(
        "--stall-timeout",
        type=_positive_seconds,
        metavar="SECONDS",
        help=f"fail a model whose transfer makes no progress this long (default 120, or ${STALL_SECONDS_ENV})",
    )
    hub.add_argument(
        "--connect-timeout",
        type=_positive_seconds,
        metavar="SECONDS",
        help=f"give up when the Hub cannot be reached this long (default 10, or ${CONNECT_SECONDS_ENV})",
    )


def add_path_arguments(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("model", metavar="REPO_ID", help="a repo id, such as Qwen/Qwen3-TTS-12Hz-0.6B-Base")
    sub.add_argument(
        "--local-dir",
        type=Path,
        metavar="DIR",
        help="read this directory (default: the Modal Volume, through Modal's API: the path a container loads)",
    )
    add_model_list(sub, "the model list, for the mount")
    expected = sub.add_mutually_exclusive_group()
    expected.add_argument("--commit", metavar="SHA", help="refuse any other commit than this one")
    expected.add_argument("--lock", type=Path, metavar="FILE", help="refuse any other commit than this lock names")


def add_unlock_arguments(sub: argparse.ArgumentParser) -> None:
    add_model_list(sub, "the model list, for the volume's name")
    sub.add_argument("--yes", action="store_true", help="really break it (without it, unlock only says who holds it)")


def seed_command_line(argv: Sequence[str]) -> list[str]:
    """The command line with a seed flag turned into its command (see SEED_FLAGS); any other, unchanged.

    Only a command line that starts with an option is translated: `--model-size L …` alone is
    `download --model-size L …`, `--list-only …` is `list …`, `--clear …` is `clear …`.
    """
    args = list(argv)
    if not args or not args[0].startswith("-") or args[0] in ("-h", "--help"):
        return args
    named = sorted({SEED_FLAGS[a] for a in args if a in SEED_FLAGS})
    if len(named) > 1:
        raise UsageError("--list-only and --clear name two commands; pass one of them")
    if named:
        return [named[0], *(a for a in args if a not in SEED_FLAGS)]
    if any(a == "--model-size" or a.startswith("--model-size=") for a in args):
        return ["download", *args]
    return args


class _OneLineErrors(argparse.ArgumentParser):
    """Usage errors as one line that says where the help is, not the whole usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message}; see `{self.prog} --help`\n")


def _seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds) or seconds < 0:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of seconds (0 or more)")
    return seconds


def _positive_seconds(value: str) -> float:
    seconds = _seconds(value)
    if seconds == 0:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of seconds above 0")
    return seconds
