"""Which runs of the workflows GitHub cancels: its concurrency rule modelled, fed the real workflow files.

The rule, as GitHub's documentation of `concurrency` states it ("Control the concurrency of workflows
and jobs", https://docs.github.com/en/actions/how-tos/write-workflows/choose-when-workflows-run/control-workflow-concurrency,
formerly https://docs.github.com/en/actions/using-jobs/using-concurrency):

- A group is any string, the value of `concurrency.group` (or `concurrency` itself) after its
  expressions are evaluated; names are compared ignoring case.
- At most one run (or job) of a group is in progress. A run queued while another of its group is in
  progress is pending.
- By default (`queue: single`) a group has at most one pending run: "Any existing pending job or
  workflow in the same concurrency group, if it exists, will be canceled and the new queued job or
  workflow will take its place." `cancel-in-progress: true` also cancels the one in progress.
- With `queue: max` (GitHub's changelog of 2026-05-07, "GitHub Actions concurrency groups now allow
  larger queues"), up to 100 runs wait, in the order they were queued, and a run queued when 100 wait
  is cancelled; `queue: max` cannot be combined with `cancel-in-progress: true`.

`act` does not model concurrency at all, so the workflows' groups are checked here: each run's group
is evaluated from the workflow file with the context GitHub would give that run, and the runs are
queued as on a busy Monday. The expression evaluator covers what the groups use: contexts, string
literals, `==`, `!=`, `!`, `&&`, `||` and parentheses, with GitHub's value semantics for `&&`/`||`
and case-insensitive string comparison; comparing values of different types is false here (GitHub
converts them to numbers), which no group here relies on.
"""

from __future__ import annotations

import itertools
import re
from collections import defaultdict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from tests.test_workflows import VOLUME, WORKFLOWS, load_workflow

QUEUE_MAX = 100  # the most runs `queue: max` keeps waiting

# -- GitHub expressions, the subset the groups use --------------------------------------------

TOKEN = re.compile(r"\s*(?:(?P<string>'(?:[^']|'')*')|(?P<op>==|!=|&&|\|\||[!()])|(?P<word>[A-Za-z_][\w.-]*))")


def tokens(expression: str) -> Iterator[str]:
    position = 0
    while position < len(expression.rstrip()):
        match = TOKEN.match(expression, position)
        assert match, f"the model does not know {expression[position:]!r}"
        position = match.end()
        yield match[0].strip()


class Evaluator:
    """Evaluates one expression against a context, by recursive descent: || over && over ! over ==."""

    def __init__(self, expression: str, context: Mapping[str, Any]) -> None:
        self.tokens = list(tokens(expression))
        self.context = context

    def value(self) -> Any:
        result = self.either()
        assert not self.tokens, f"left over: {self.tokens}"
        return result

    def either(self) -> Any:
        left = self.both()
        while self.tokens[:1] == ["||"]:
            self.tokens.pop(0)
            right = self.both()
            left = left if truthy(left) else right
        return left

    def both(self) -> Any:
        left = self.negation()
        while self.tokens[:1] == ["&&"]:
            self.tokens.pop(0)
            right = self.negation()
            left = right if truthy(left) else left
        return left

    def negation(self) -> Any:
        if self.tokens[:1] == ["!"]:
            self.tokens.pop(0)
            return not truthy(self.negation())
        left = self.operand()
        if self.tokens[:1] in (["=="], ["!="]):
            operator = self.tokens.pop(0)
            equal = same(left, self.operand())
            return equal if operator == "==" else not equal
        return left

    def operand(self) -> Any:
        token = self.tokens.pop(0)
        if token == "(":
            inner = self.either()
            assert self.tokens.pop(0) == ")"
            return inner
        if token.startswith("'"):
            return token[1:-1].replace("''", "'")
        if token in ("true", "false", "null"):
            return {"true": True, "false": False, "null": None}[token]
        node: Any = self.context
        for part in token.split("."):
            node = node.get(part) if isinstance(node, Mapping) else None
        return node


def truthy(value: Any) -> bool:
    return value not in (None, False, 0, "")


def same(left: Any, right: Any) -> bool:
    if isinstance(left, str) and isinstance(right, str):
        return left.casefold() == right.casefold()
    return type(left) is type(right) and bool(left == right)


def interpolate(template: str, context: Mapping[str, Any]) -> str:
    """A string with `${{ … }}` in it, as GitHub renders it: each expression's value as text."""

    def render(match: re.Match[str]) -> str:
        value = Evaluator(match[1], context).value()
        if isinstance(value, bool):
            return "true" if value else "false"
        return "" if value is None else str(value)

    return re.sub(r"\$\{\{(.*?)\}\}", render, template)


# -- the runs and GitHub's queue ----------------------------------------------------------------


@dataclass
class Run:
    """One run (or job) of a workflow, with the group GitHub puts it in."""

    name: str
    group: str
    queue: str
    cancel_in_progress: bool
    state: str = "queued"


def concurrency_of(workflow: Mapping[str, Any], job: str) -> Mapping[str, Any]:
    """The one concurrency block that applies to a job: the workflow's or the job's (never both, here)."""
    blocks = [block for block in (workflow.get("concurrency"), workflow["jobs"][job].get("concurrency")) if block]
    assert len(blocks) == 1, f"{job}: the model handles one concurrency block per run"
    [block] = blocks
    return {"group": block} if isinstance(block, str) else block


RUN_IDS = itertools.count(9001)


def run_of(name: str, workflow_file: str, job: str, event: str, inputs: Mapping[str, Any] | None = None) -> Run:
    workflow = load_workflow(WORKFLOWS / workflow_file)
    block = concurrency_of(workflow, job)
    context = {"github": {"event_name": event, "run_id": next(RUN_IDS), "workflow": workflow["name"]}}
    context["inputs"] = dict(inputs or {})
    cancel = block.get("cancel-in-progress", False)
    cancel = truthy(Evaluator(cancel[3:-2], context).value()) if isinstance(cancel, str) else cancel
    return Run(name, interpolate(block["group"], context), block.get("queue", "single"), cancel)


def dispatched(operation: str, *, dry_run: bool = False, model_size: str = "both") -> dict[str, Any]:
    """The inputs context of a dispatch: booleans are booleans there (unlike the event payload)."""
    return {"operation": operation, "model_size": model_size, "dry_run": dry_run, "prune": False, "confirm": ""}


def push_download(name: str) -> Run:
    return run_of(name, "model-cache.yml", "model-cache", "push")


def dispatch(name: str, operation: str, **options: Any) -> Run:
    return run_of(name, "model-cache.yml", "model-cache", "workflow_dispatch", dispatched(operation, **options))


def weekly_check(name: str) -> Run:
    return run_of(name, "model-drift.yml", "volume-check", "schedule")


@dataclass
class Group:
    running: Run | None = None
    pending: list[Run] = field(default_factory=list)


@dataclass
class GitHubActions:
    """GitHub's rule for one repository's concurrency groups, as the module's docstring states it."""

    groups: dict[str, Group] = field(default_factory=lambda: defaultdict(Group))

    def queue(self, *runs: Run) -> None:
        for run in runs:
            group = self.groups[run.group.casefold()]
            assert all(other.queue == run.queue for other in group.pending), "a group mixes queue modes"
            if group.running is not None and run.cancel_in_progress:
                group.running.state = "cancelled"
                group.running = None
            if group.running is None:
                group.running, run.state = run, "running"
            elif run.queue == "max":
                run.state = "pending" if len(group.pending) < QUEUE_MAX else "cancelled"
                group.pending += [run] if run.state == "pending" else []
            else:
                for replaced in group.pending:
                    replaced.state = "cancelled"
                group.pending, run.state = [run], "pending"

    def finish(self, run: Run) -> None:
        group = self.groups[run.group.casefold()]
        assert group.running is run, f"{run.name} is {run.state}, not running"
        run.state = "done"
        group.running = group.pending.pop(0) if group.pending else None
        if group.running is not None:
            group.running.state = "running"


# -- the rule against the old layout, then against the workflows --------------------------------


def test_one_shared_group_lets_a_dispatched_list_cancel_the_merges_download():
    """The layout before: every run in one group. The model reproduces the loss the issue reported."""
    group = f"model-cache-{VOLUME}"
    running = Run("a download", group, "single", cancel_in_progress=False)
    merge = Run("the merge's download", group, "single", cancel_in_progress=False)
    listing = Run("a dispatched list", group, "single", cancel_in_progress=False)
    github = GitHubActions()

    github.queue(running, merge, listing)

    assert (running.state, merge.state, listing.state) == ("running", "cancelled", "pending")


def test_a_dispatched_list_and_the_weekly_check_never_cancel_the_merges_download():
    running = push_download("a download")
    merge = push_download("the merge's download")
    reads = [
        dispatch("a dispatched list", "list"),
        weekly_check("Monday's check"),
        dispatch("a dispatched verify", "verify", model_size="0.6B"),
        dispatch("a dry-run download", "download", dry_run=True),
        dispatch("a dry-run clear", "clear", dry_run=True),
    ]
    github = GitHubActions()

    github.queue(running, merge, *reads)

    assert (running.state, merge.state) == ("running", "pending")
    assert {run.name: run.state for run in reads} == {run.name: "running" for run in reads}  # none waits
    github.finish(running)
    assert merge.state == "running"


def test_queued_downloads_and_clears_all_run_in_the_order_they_were_queued():
    """No writer replaces another: the last to run is the last queued, so main's newest lock is applied last."""
    writers = [
        push_download("a download"),
        push_download("the merge's download"),
        dispatch("a dispatched 0.6B download", "download", model_size="0.6B"),
        dispatch("a clear", "clear"),
        push_download("the next merge's download"),
    ]
    github = GitHubActions()
    github.queue(*writers)
    assert [run.state for run in writers] == ["running"] + ["pending"] * 4

    order = []
    while running := next((run for run in writers if run.state == "running"), None):
        order.append(running.name)
        github.finish(running)

    assert order == [run.name for run in writers]
    assert {run.state for run in writers} == {"done"}


def test_two_checks_queued_behind_a_check_collapse_into_the_newer_one():
    """The check's group is single: a newer check replaces a pending one, and reads the volume later."""
    checks = [weekly_check("Monday's check"), weekly_check("a dispatched check"), weekly_check("next Monday's check")]
    github = GitHubActions()
    github.queue(*checks)
    assert [run.state for run in checks] == ["running", "cancelled", "pending"]


def test_every_writer_shares_the_volume_queue_and_every_read_has_a_group_of_its_own():
    writers_group = push_download("a download").group
    assert writers_group.startswith(f"model-cache-{VOLUME}")
    for operation, dry_run in itertools.product(["download", "list", "verify", "clear"], [False, True]):
        first, second = dispatch("one", operation, dry_run=dry_run), dispatch("two", operation, dry_run=dry_run)
        if operation in ("download", "clear") and not dry_run:
            assert first.group == second.group == writers_group, operation
            assert first.queue == "max" and not first.cancel_in_progress
        else:
            assert len({first.group, second.group, writers_group}) == 3, (operation, dry_run)
    check = weekly_check("Monday's check")
    assert check.group.casefold() not in {writers_group.casefold()}
    assert not check.cancel_in_progress


def test_the_expression_model_follows_githubs_operators():
    context = {"github": {"event_name": "push"}, "inputs": {}}
    assert Evaluator("github.event_name == 'PUSH' && 'w' || 'r'", context).value() == "w"  # case-insensitive
    assert Evaluator("inputs.operation == 'download' && 'w' || 'r'", context).value() == "r"  # null is not a string
    assert Evaluator("!inputs.dry_run", context).value() is True
    assert Evaluator("(github.event_name != 'push' || !false) && 'x'", context).value() == "x"
    assert interpolate("g-${{ github.event_name == 'push' }}-${{ inputs.none }}", context) == "g-true-"
