"""Renders a conformance result as a text table, Markdown or JSON."""

from __future__ import annotations

import json
import sys
from collections import Counter
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ..checks import statediff
from ..model import status as fact_statuses
from ..model.facts import FACTS, MISUSE

if TYPE_CHECKING:
    from ..checks.runner import RunResult

#: The sources shown as columns of their own; "other" adds up the rest (layout, comparisons,
#: concurrent, model-checked, live: each is in the JSON's by_source), so the columns add up to
#: "checks".
_SOURCE_COLUMNS = ("scenario", "exhaustive", "random")


def _other(row: dict[str, Any]) -> int:
    return row["checks"] - sum(row["by_source"].get(s, 0) for s in _SOURCE_COLUMNS)


def rows(result: RunResult) -> list[dict[str, Any]]:
    """One row per fact (and MISUSE): its status, counts by source and failures."""
    return _rows(result)


def _rows(result: RunResult) -> list[dict[str, Any]]:
    rows = []
    for fact in FACTS:
        status = result.fact_status(fact.id)
        note = fact_statuses.not_applicable_reason(
            fact.id, result.ledger, profile=result.profile,
            layout_checked=result.layout_checked)
        rows.append({"id": fact.id, "summary": fact.summary,
                     "checks": result.ledger.checks[fact.id],
                     "by_source": result.ledger.counts_by_source(fact.id),
                     "result": status, "note": note,
                     "checked_by": fact_statuses.checked_by(fact.id, result.ledger),
                     "ordering": fact.ordering,
                     "failures": result.ledger.failures.get(fact.id, [])})
    rows.append({"id": MISUSE, "summary": "misuse upstream only asserts is rejected, "
                 "state unchanged", "checks": result.ledger.checks[MISUSE],
                 "by_source": result.ledger.counts_by_source(MISUSE),
                 "result": result.fact_status(MISUSE),
                 "checked_by": fact_statuses.checked_by(MISUSE, result.ledger),
                 "ordering": False,
                 "note": "", "failures": result.ledger.failures.get(MISUSE, [])})
    return rows


def _exploration_lines(result: RunResult) -> list[str]:
    exploration = result.exploration
    if exploration is None:
        made = result.ledger.counts_by_source_total("exhaustive")
        plan = result.plan
        if made:
            return ["exhaustive exploration: stopped before its first level was complete "
                    f"({made} checks made)"]
        if plan is not None and not plan.explores:
            return ["exhaustive exploration: off (--explore-seconds 0 or --explore-depth 0)"]
        if plan is not None:
            return ["exhaustive exploration: not run (the run stopped before it)"]
        return ["exhaustive exploration: off"]
    lines = [exploration.summary()]
    if exploration.stopped_by == "interrupted":
        lines.append("  interrupted: the scope above is what was reached")
    if exploration.failure is None and exploration.stopped_by == "depth":
        lines.append(f"  every action sequence up to depth {exploration.depth_bound} from each "
                     "start point was compared")
    return lines


def _boundary_lines(result: RunResult) -> list[str]:
    """The boundary ledger (conformance.model.boundaries): what the run reached, and gaps."""
    if result.boundaries is None:
        return []
    from ..model import boundaries
    return [""] + boundaries.render_text(result.boundaries)


def _live_lines(result: RunResult) -> list[str]:
    live = result.live
    if live is None:
        return []
    if live.profile != result.profile:
        note = (f" (this interpreter is the {live.profile} profile; the run above checked "
                f"{result.profile})")
    else:
        note = ""
    lines = [f"live interpreter: CPython {live.version} free-threaded, {live.profile} profile"
             f"{note}; {live.actions} actions in {live.runs} runs",
             "  confirmed against the real interpreter: "
             + ", ".join(f"{fact} ({n})" for fact, n in sorted(live.checks.items()))]
    ops = ", ".join(f"{op} {n}" for op, n in sorted(getattr(live, "seq_ops", {}).items()))
    lines.append(f"  sequence values compared with the oracle: {getattr(live, 'seq_values', 0)} "
                 f"(wr_seq, rd_seq, every slot's seq, results) over "
                 f"{sum(getattr(live, 'seq_ops', {}).values())} driven operations"
                 + (f" ({ops})" if ops else "")
                 + f"; the interpreter's own wr_seq advances between them: "
                 f"{getattr(live, 'interpreter_advances', 0)}")
    if getattr(live, "interpreter_thread_states", 0):
        lines.append(f"  {live.interpreter_thread_states} subinterpreter step(s) grew the main "
                     "interpreter's full array through a thread state of its own (import.c's "
                     "switch_to_main_interpreter), compared as such")
    if getattr(live, "seq_raced", 0):
        lines.append(f"  not compared: {live.seq_raced} operations during which another "
                     "thread attached or detached")
    for reason in getattr(live, "seq_skipped", []):
        lines.append(f"  not driven: {reason}")
    if live.failures:
        lines.append(f"  DISAGREEMENTS ({len(live.failures)}):")
        lines += [f"    {failure}" for failure in live.failures[:10]]
    else:
        lines.append("  no disagreement with the oracle")
    return lines


def _not_checked(result: RunResult) -> str:
    """What the run did not check concurrently, and the command that would."""
    sequential = [row["id"] for row in _rows(result)
                  if row["result"] == fact_statuses.PASS_SEQUENTIAL]
    if not sequential:
        return (f"; not checked by this run: {result.concurrency_command}"
                if result.concurrency_command else "")
    text = (f"; NOT checked under concurrency (pass from sequential runs only): "
            f"{', '.join(sequential)}")
    if result.concurrency:
        text += f" ({result.concurrency})"
    if result.concurrency_command:
        text += f"; to check them: {result.concurrency_command}"
    return text


#: Version of the JSON report's layout; bumped when a field changes meaning or goes away.
SCHEMA_VERSION = 2


def verdict(result: RunResult) -> str:
    if result.interrupted:
        rows = _rows(result)
        failing = sorted({f for failure in result.failures for f in failure.facts})
        checked = sum(1 for row in rows if row["result"].startswith("pass"))
        return (f"INCOMPLETE: interrupted after {result.ledger.examples} examples "
                f"({result.seconds:.1f} s); {checked} fact(s) passed so far"
                + (f", failing so far: {', '.join(failing)}" if failing else "")
                + "; no verdict")
    if result.conforms:
        return (f"CONFORMS: {result.implementation} matches CPython's QSBR "
                f"({result.profile_label}) on every fact checked; {result.ledger.steps} steps in "
                f"{result.ledger.examples} examples, {result.seconds:.1f} s"
                + _not_checked(result))
    rows = _rows(result)
    failing = sorted({f for failure in result.failures for f in failure.facts}
                     | {row["id"] for row in rows if row["result"] == "FAIL"})
    unchecked = [row["id"] for row in rows if row["result"] == "UNCHECKED"]
    text = f"DOES NOT CONFORM: {result.implementation} ({result.profile_label})"
    if result.live is not None and result.live.failures:
        failing = failing + ["live interpreter"]
    if failing:
        text += f" fails {', '.join(failing)}"
    if unchecked:
        text += (f"{';' if failing else ''} {len(unchecked)} fact(s) never checked"
                 f"{' (the run stops at the first failure)' if failing else ''}: "
                 f"{', '.join(unchecked)}")
    return text


_KIND_LETTERS = {"sequential": "S", "concurrent": "C", "model-checked": "M", "live": "L",
                 "hardware": "H"}


def _kinds(row: dict[str, Any]) -> str:
    """S(equential), C(oncurrent), M(odel-checked), L(ive): the kinds that checked a fact."""
    return "".join(_KIND_LETTERS[kind] for kind in row["checked_by"]) or "-"


def to_text(result: RunResult) -> str:
    rows = _rows(result)
    lines = [
        f"QSBR conformance report: {result.implementation} {result.version}",
        f"profile {result.profile}; interpreter {result.interpreter}; "
        f"GIL {'on' if result.gil_enabled else 'off'}; seed {result.seed}",
        "",
        "checks by source: scenario (the fixed coverage scenario), exhaustive (bounded-"
        "exhaustive exploration), random (Hypothesis), other (layout, comparisons, concurrent, "
        "model-checked, live; each in the JSON's by_source); a check counts once per step, and "
        "only where the step could tell a wrong implementation apart.  checked by: S "
        "sequential, C concurrent (torture judged by its checks and the contract oracle), M "
        "model-checked, L live (the running interpreter confirmed the rule), H hardware "
        "(a litmus through the implementation's functions, decided conclusive on this machine)",
        "",
        f"{'fact':<11} {'what it says':<60} {'checks':>8} {'scenario':>8} {'exhaust.':>8} "
        f"{'random':>8} {'other':>8} {'by':<4}  result",
        f"{'-' * 11} {'-' * 60} {'-' * 8} {'-' * 8} {'-' * 8} {'-' * 8} {'-' * 8} {'-' * 4}  "
        f"{'-' * 9}",
    ]
    for row in rows:
        summary = row["summary"] if len(row["summary"]) <= 60 else row["summary"][:57] + "..."
        note = f" ({row['note']})" if row["note"] else ""
        by_source = " ".join([f"{row['by_source'].get(source, 0):>8}"
                              for source in _SOURCE_COLUMNS] + [f"{_other(row):>8}"])
        lines.append(f"{row['id']:<11} {summary:<60} {row['checks']:>8} {by_source} "
                     f"{_kinds(row):<4}  {row['result']}{note}")
    lines += [""] + _exploration_lines(result)
    lines += _boundary_lines(result)
    for failure in result.failures:
        lines += ["", f"FAILURE in {failure.check} check, facts {', '.join(failure.facts)}:",
                  *[f"  {line}" for line in failure.message.splitlines()]]
        if failure.from_database:
            lines.append(f"  replayed from the database {failure.from_database} (an example "
                         "stored there by an earlier run or a campaign)")
        if failure.diff:
            lines.append("  differences (observed, expected):")
            lines += [f"    {line}" for line in statediff.render(failure.diff)]
        if failure.steps:
            lines.append(_sequence_heading(failure.check))
            lines += [f"    {step}" for step in failure.steps]
        if failure.replay or result.replay:
            lines.append(f"  replay: {failure.replay or result.replay}")
    for fact_id, details in _unexplained(result, rows):
        lines += ["", f"FAILURE of {fact_id} (no step sequence recorded):",
                  *[f"  {line}" for detail in details for line in detail.splitlines()]]
    if result.concurrency:
        lines += ["", f"concurrency: {result.concurrency}"]
    live = _live_lines(result)
    if live:
        lines += [""] + live
    if result.modelcheck is not None:
        lines += ["", result.modelcheck.line]
    lines += ["", verdict(result)]
    return "\n".join(lines)


def _unexplained(result: RunResult, rows: list[dict[str, Any]]) -> list[tuple[str, list[str]]]:
    """FAIL rows that no failure above explains: their ledger details, so that no FAIL is
    left without a reason in the text and Markdown reports."""
    explained = {fact for failure in result.failures for fact in failure.facts}
    return [(row["id"], row["failures"]) for row in rows
            if row["result"] == fact_statuses.FAIL and row["id"] not in explained
            and row["failures"]]


def _sequence_heading(check: str) -> str:
    return {"coverage scenario": "  sequence (the fixed coverage scenario, up to the failure):",
            "exhaustive": "  sequence (every call from a fresh interpreter):",
            "differential": "  shrunk sequence:"}.get(check, "  sequence:")


def to_markdown(result: RunResult) -> str:
    lines = [f"# QSBR conformance: {result.implementation} {result.version}", "",
             f"- profile: {result.profile}", f"- interpreter: {result.interpreter}",
             f"- GIL: {'on' if result.gil_enabled else 'off'}",
             f"- seed: {result.seed}" + (f" (replay: `{result.replay}`)" if result.replay
                                         else ""),
             f"- {result.ledger.examples} examples, {result.ledger.steps} steps, "
             f"{result.seconds:.1f} s", "",
             f"- {'; '.join(_exploration_lines(result))}", "",
             *[f"- {line.strip()}" for line in _boundary_lines(result) if line.strip()],
             "",
             "| fact | what it says | checks | scenario | exhaustive | random | other "
             "| checked by | result |",
             "|---|---|---:|---:|---:|---:|---:|---|---|"]
    for row in _rows(result):
        note = f" ({row['note']})" if row["note"] else ""
        by_source = " | ".join([str(row["by_source"].get(source, 0))
                                for source in _SOURCE_COLUMNS] + [str(_other(row))])
        lines.append(f"| {row['id']} | {row['summary']} | {row['checks']} | {by_source} | "
                     f"{', '.join(row['checked_by']) or '-'} | {row['result']}{note} |")
    for failure in result.failures:
        lines += ["", f"## Failure: {failure.check} ({', '.join(failure.facts)})", ""]
        if failure.from_database:
            lines += [f"Replayed from the database `{failure.from_database}`.", ""]
        lines += ["```", failure.message, *failure.steps, "```"]
        if failure.diff:
            lines += ["", "| field | observed | expected |", "|---|---|---|"]
            lines += [f"| `{d['field']}` | `{d['observed']!r}` | `{d['expected']!r}` |"
                      for d in failure.diff]
        if result.replay:
            lines += ["", f"Replay: `{result.replay}`"]
    for fact_id, details in _unexplained(result, _rows(result)):
        lines += ["", f"## Failure: {fact_id} (no step sequence recorded)", "", "```",
                  *details, "```"]
    if result.concurrency:
        lines += ["", f"Concurrency: {result.concurrency}"]
    live = _live_lines(result)
    if live:
        lines += ["", "## Live interpreter", "", "```", *live, "```"]
    if result.modelcheck is not None:
        lines += ["", "## Model checker", "", result.modelcheck.line]
    lines += ["", f"**{verdict(result)}**", ""]
    return "\n".join(lines)


def _versions() -> dict[str, str]:
    import hypothesis

    from .common import suite_version
    return {"suite": suite_version(), "hypothesis": hypothesis.__version__,
            "python": sys.version.split()[0], "implementation": sys.implementation.name}


def to_json(result: RunResult) -> dict[str, Any]:
    rows = _rows(result)
    return {
        "schema_version": SCHEMA_VERSION,
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "versions": _versions(),
        "options": result.options,
        "seed": result.seed,
        "replay": result.replay,
        "complete": not result.interrupted,
        "implementation": result.implementation,
        "version": result.version,
        "profile": result.profile,
        "release": result.release,
        "interpreter": result.interpreter,
        "gil_enabled": result.gil_enabled,
        "examples": result.ledger.examples,
        "steps": result.ledger.steps,
        "seconds": round(result.seconds, 3),
        "conforms": result.conforms,
        "verdict": verdict(result),
        "concurrency": result.concurrency,
        "counts": dict(Counter(row["result"] for row in rows)),
        "facts": rows,
        "phases": list(result.phases),
        "plan": result.plan.as_dict() if result.plan is not None else None,
        "target": result.target.describe() if result.target is not None else None,
        "exploration": (None if result.exploration is None
                        else result.exploration.scope()),
        "boundaries": _boundaries_json(result),
        "failures": [{"check": f.check, "facts": list(f.facts), "message": f.message,
                      "steps": list(f.steps), "step_records": [r.to_json() for r in f.records],
                      "diff": list(f.diff), "from_database": f.from_database or None,
                      "replay": result.replay}
                     for f in result.failures],
        "modelcheck": None if result.modelcheck is None else {
            "ran": result.modelcheck.ran, "line": result.modelcheck.line,
            "credited": result.modelcheck.credited},
        "live": None if result.live is None else {
            "version": result.live.version, "profile": result.live.profile,
            "actions": result.live.actions, "runs": result.live.runs,
            "checks": dict(result.live.checks), "failures": result.live.failures,
            "seq_values_compared": result.live.seq_values,
            "seq_operations": dict(result.live.seq_ops),
            "interpreter_own_advances": result.live.interpreter_advances,
            "interpreter_own_thread_states": result.live.interpreter_thread_states,
            "seq_not_driven": result.live.seq_skipped,
            "seq_not_compared_raced": result.live.seq_raced},
    }


def _boundaries_json(result: RunResult) -> Any:
    if result.boundaries is None:
        return None
    from ..model import boundaries
    return boundaries.to_json(result.boundaries)


def write_json(result: RunResult, path: str) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(to_json(result), handle, indent=2, default=str)
        handle.write("\n")
