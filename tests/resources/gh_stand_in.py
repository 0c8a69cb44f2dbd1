#!/usr/bin/env python3
"""Offline stand-in for the GitHub CLI (`gh`) in the workflow tests (tests/test_drift_workflow.py and others).

The test links it as `gh` into a directory it puts first on PATH, so a workflow runs unchanged.
It answers the few commands the workflow uses from a JSON file, `$GH_STUB_STATE`, that outlives one
run (so a second run finds the pull request or issue the first one opened), and appends each call
to `$STUB_RECORD_DIR/gh.jsonl`: its arguments and whether GH_TOKEN was set (never its value).

A pull request's head is matched by branch name alone, as `gh pr list --head` does, so a fork's
branch of the same name is listed too; `--json` gives what gh gives for the fields asked
(`isCrossRepository`, `headRepositoryOwner`, `author`: a fork's pull request has `cross_repository`,
its `head_owner` and its `author` in the state), and only those. What the stand-in creates is the
workflow's own: this repository's branch, by `app/github-actions` (GITHUB_TOKEN's identity).

```json
{"next": 3,
 "pulls": [{"number": 1, "state": "open", "head": "model-drift/lock-refresh", "base": "main",
            "title": "...", "body": "...", "edits": 0, "comments": [], "branch_deleted": false,
            "cross_repository": false, "head_owner": "owner", "author": "app/github-actions"}],
 "issues": [{"number": 2, "state": "open", "title": "...", "labels": ["model-cache"], "body": "...",
             "comments": []}],
 "labels": ["model-cache"],
 "dispatches": [{"workflow": "ci.yml", "ref": "dependabot/uv/python"}]}
```

A command or a `--jq` filter it does not know fails (exit 1, naming it), so the workflow cannot
come to rely on something the stand-in only pretends to do.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

URL = "https://github.com/owner/repo"
OWNER = "owner"
WORKFLOW_IDENTITY = "app/github-actions"  # how gh names the author of what GITHUB_TOKEN opened
# The `--jq` filters the workflows use: all numbers; the numbers of the items with one exact title; the
# pull requests of this repository by one author (and, for the log, every other one).
ALL_NUMBERS = ".[].number"
BY_TITLE = re.compile(r'^\.\[\] \| select\(\.title == "(?P<title>[^"\\]*)"\) \| \.number$')
OURS = re.compile(
    r'^\.\[\] \| select\(\(\.isCrossRepository \| not\) and \.author\.login == "(?P<author>[^"\\]+)"\) \| \.number$'
)
NOT_OURS = re.compile(
    r'^\.\[\] \| select\(\.isCrossRepository or \.author\.login != "(?P<author>[^"\\]+)"\) \| '
    r'"#\\\(\.number\) \(from \\\(\.headRepositoryOwner\.login\), by \\\(\.author\.login\)\)"$'
)
FIELDS = {"number", "title", "isCrossRepository", "headRepositoryOwner", "author"}


def main(argv: list[str]) -> int:
    record(argv)
    state_path = Path(os.environ["GH_STUB_STATE"])
    state: dict[str, Any] = json.loads(state_path.read_text()) if state_path.exists() else {}
    state.setdefault("next", 1)
    state.setdefault("pulls", [])
    state.setdefault("issues", [])
    state.setdefault("labels", [])
    state.setdefault("dispatches", [])
    code = run(argv, state)
    state_path.write_text(json.dumps(state, indent=2) + "\n")
    return code


def record(argv: list[str]) -> None:
    directory = Path(os.environ["STUB_RECORD_DIR"])
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / "gh.jsonl").open("a") as f:
        f.write(json.dumps({"argv": argv, "gh_token": bool(os.environ.get("GH_TOKEN"))}) + "\n")


def run(argv: list[str], state: dict[str, Any]) -> int:
    if argv[:2] == ["auth", "setup-git"]:
        return 0  # the test's remote is a local path: git needs no credential helper
    parser = argparse.ArgumentParser(prog="gh")
    parser.add_argument("noun", choices=["pr", "issue", "label", "workflow"])
    parser.add_argument("verb")
    parser.add_argument("target", nargs="?")
    for flag in [
        "--head",
        "--base",
        "--state",
        "--json",
        "--jq",
        "--title",
        "--body-file",
        "--comment",
        "--label",
        "--ref",
    ]:
        parser.add_argument(flag)
    parser.add_argument("--description")
    parser.add_argument("--color")
    parser.add_argument("--force", action="store_true")
    parser.add_argument("--delete-branch", action="store_true")
    args = parser.parse_args(argv)
    items: list[dict[str, Any]] = state["pulls" if args.noun == "pr" else "issues"]
    match args.noun, args.verb:
        case "workflow", "run":
            state["dispatches"].append({"workflow": args.target, "ref": args.ref})
            return 0
        case "workflow", _:
            raise SystemExit(f"gh stand-in: `gh workflow {args.verb}` is not something it knows")
        case "label", "create":
            if args.target not in state["labels"]:
                state["labels"].append(args.target)
            return 0
        case _, "list":
            found = [
                item
                for item in items
                if (args.state in (None, "all") or item["state"] == args.state)
                and (args.head is None or item["head"] == args.head)
                and (args.label is None or args.label in item["labels"])
            ]
            for line in jq_lines(args.jq, [as_json(item, args.json) for item in found]):
                print(line)
            return 0
        case _, "create":
            item = {"number": state["next"], "state": "open", "title": args.title, "body": body(args), "comments": []}
            if args.noun == "pr":
                item.update(head=args.head, base=args.base, edits=0, branch_deleted=False)
                item.update(cross_repository=False, head_owner=OWNER, author=WORKFLOW_IDENTITY)
            else:
                if args.label not in state["labels"]:
                    print(f"could not add label: '{args.label}' not found", file=sys.stderr)
                    return 1
                item["labels"] = [args.label]
            state["next"] += 1
            items.append(item)
            print(f"{URL}/{'pull' if args.noun == 'pr' else 'issues'}/{item['number']}")
            return 0
    item = find(items, args.target)
    match args.verb:
        case "edit":
            item.update(title=args.title, body=body(args), edits=item["edits"] + 1)
        case "comment":
            item["comments"].append(body(args))
        case "close":
            item["state"] = "closed"
            if args.comment:
                item["comments"].append(args.comment)
            if args.delete_branch:
                item["branch_deleted"] = True
        case _:
            raise SystemExit(f"gh stand-in: `gh {args.noun} {args.verb}` is not something it knows")
    return 0


def as_json(item: dict[str, Any], fields: str | None) -> dict[str, Any]:
    """An item as `gh … list --json <fields>` prints it: only the fields asked for, shaped as gh shapes them."""
    asked = (fields or "").split(",")
    if unknown := set(asked) - FIELDS:
        raise SystemExit(f"gh stand-in: --json {', '.join(sorted(unknown))} is not a field it knows")
    author = item.get("author", WORKFLOW_IDENTITY)
    full = {
        "number": item["number"],
        "title": item["title"],
        "isCrossRepository": item.get("cross_repository", False),
        "headRepositoryOwner": {"login": item.get("head_owner", OWNER)},
        "author": {"login": author, "is_bot": author.startswith("app/")},
    }
    return {key: full[key] for key in asked}


def jq_lines(expression: str | None, items: list[dict[str, Any]]) -> list[str]:
    """What `--jq` prints for the filters the workflows use; a field not asked for with --json is null, as in gh."""
    if expression == ALL_NUMBERS:
        return [str(item.get("number")) for item in items]
    if expression is not None and (match := BY_TITLE.fullmatch(expression)):
        return [str(item.get("number")) for item in items if item.get("title") == match["title"]]
    if expression is not None and (match := OURS.fullmatch(expression)):
        return [
            str(item.get("number"))
            for item in items
            if not item.get("isCrossRepository") and login(item) == match["author"]
        ]
    if expression is not None and (match := NOT_OURS.fullmatch(expression)):
        return [
            f"#{item.get('number')} (from {(item.get('headRepositoryOwner') or {}).get('login')}, by {login(item)})"
            for item in items
            if item.get("isCrossRepository") or login(item) != match["author"]
        ]
    raise SystemExit(f"gh stand-in: --jq {expression!r} is not a filter it knows")


def login(item: dict[str, Any]) -> str | None:
    author = item.get("author") or {}
    return author.get("login") if isinstance(author, dict) else None


def body(args: argparse.Namespace) -> str:
    if args.body_file is None:
        raise SystemExit("gh stand-in: the workflow passes bodies with --body-file")
    return Path(args.body_file).read_text()


def find(items: list[dict[str, Any]], number: str | None) -> dict[str, Any]:
    for item in items:
        if str(item["number"]) == number:
            return item
    raise SystemExit(f"gh stand-in: no #{number}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
