"""The hazards litmus through the C ABI: any library exporting reference_c/include/qsbr_api.h.

The driver ``reference_c/harness/cabi_litmus.c`` (built on first use with make) loads the
library with dlopen() and runs each shape through the library's own exported functions, two
threads pinned to two CPUs meeting at spin barriers, each side spinning a random 0..63
iterations (a seeded xorshift) before its racing part.  Shapes (the driver's ``--list``):

- ``read-seqcst``: attach then the first protected load, against a writer that unlinks,
  advances and polls.  Forbidden by C11 for a correct library (S-ATTACH-1's seq_cst store,
  S-POLL-1's fence); observed, it fails S-ATTACH-1 and S-SAFE-1.
- ``read-reference``: the same with the attach replaced by the harness's own release store:
  the rate at which an attach that is only a release store would show on this machine, with
  this library's writer path.  The decide rule's reference rate.
- ``stale-goal``, ``retire-before-unlink``: hazards of the callers (allowed by the semantics,
  docs/semantics.md), reported as rates; ``stale-goal-advancing`` must show nothing (S-ADV-1).
- ``sb-reference``: plain store buffering with no QSBR call (does this machine show it at all).

Each racing shape has a control (the writer's part runs to its end before the reader's starts)
that must count 0; a non-zero control is a broken harness, never a verdict.

The decide rule (:func:`decide`): a shape that must show nothing runs in batches until the
Wilson 95% upper bound of its rate is below ``RATIO`` times the reference shape's lower bound
(``conclusive``), or until ``max_iterations`` (``inconclusive on this machine``); one
observation of the forbidden outcome is ``observed`` at once.  A zero reference (this machine,
so loaded or so ordered that it never showed the reordering) can never make a clean result
conclusive.

What x86-64 cannot show at all (TSO forbids the relaxation, so a relaxed or release store, an
acquire or relaxed load, compile to the same instructions): detach's release store
(S-DETACH-1), quiescent_state's acquire/release (S-QS-1), the scan's acquire loads and the
fence that advance's read-modify-write already implies (S-POLL-1).  For those the report says
"unchecked by hardware" and names ``torture --tsan`` and the model checker.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .. import sources
from .hazards import INTERVAL_METHOD, ZERO_MEANS, cpu_model, wilson

#: the clean shape must be bounded below RATIO x the reference rate.  Not conformance.checks.
#: decide's tenth: the attach path puts the library's own work between the store and the load,
#: and on a loaded 2-core AMD EPYC the release-store attach (mutants/ATTACH_RELEASE_ORDER.patch)
#: showed at 1/27 to 1/77 of read-reference's rate in the same run, so a tenth would call that
#: bug clean most of the time; at 1/100 the run that decides "conclusive" expects about 5
#: observations of such a bug (a miss about 1 in 150).
RATIO = 0.01
BATCH = 16_000
#: the default run's bound (conformance.checks.hw_phase); hazards --library: MAX_ITERATIONS
DEFAULT_RUN_MAX = 96_000
MAX_ITERATIONS = 400_000
CONTROL_ITERATIONS = 4_000
#: facts a read-seqcst observation breaks, by what the machine can tell apart
READ_FACTS = ("S-ATTACH-1", "S-SAFE-1")
#: what the read-seqcst shape credits when conclusive (kind hardware)
HARDWARE_FACTS = ("S-ATTACH-1", "S-SAFE-1")
TSO_MACHINES = ("x86_64", "amd64", "i386", "i686")
#: fact -> the order this machine cannot show (x86-64), and where to check it instead
UNCHECKED_ON_TSO = {
    "S-DETACH-1": "detach's release store (x86-TSO never reorders a store with earlier "
                  "accesses, so relaxed and release compile alike)",
    "S-QS-1": "quiescent_state's acquire load and release store (the same)",
    "S-POLL-1": "the scan's seq_cst loads and its fence (loads are not reordered on x86-TSO, "
                "and advance's read-modify-write already fences the unlink)",
}
ELSEWHERE = ("qsbr-conformance torture --tsan --library LIB-built-with--fsanitize=thread; "
             "the model checker (make -C reference_c check-relacy; the reference port)")


class LitmusSetupError(Exception):
    """The driver could not be built or run (a usage error, never a verdict)."""


def decide(forbidden: int, iterations: int, reference_rate: float,
           ratio: float = RATIO) -> str:
    """``observed`` / ``conclusive`` / ``inconclusive`` for a shape that must show nothing,
    given the reference shape's rate (the lower end of its interval, a fraction)."""
    if forbidden:
        return "observed"
    if iterations <= 0 or reference_rate <= 0:
        return "inconclusive"
    _, high = wilson(0, iterations)
    return "conclusive" if high < ratio * reference_rate else "inconclusive"


@dataclass
class ShapeResult:
    shape: str
    control: bool
    iterations: int = 0
    forbidden: int = 0
    reached: int = 0
    old_seen: int = 0
    freed_while_held: int = 0
    poisoned_reads: int = 0
    pinned: str = ""
    goal: str = ""
    commands: list[str] = field(default_factory=list)

    @property
    def interval(self) -> tuple[float, float]:
        return wilson(self.forbidden, self.iterations) if self.iterations else (0.0, 1.0)

    def add(self, other: ShapeResult) -> None:
        for name in ("iterations", "forbidden", "reached", "old_seen", "freed_while_held",
                     "poisoned_reads"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.pinned, self.goal = other.pinned, other.goal
        self.commands += other.commands

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["interval"] = list(self.interval)
        data["per_million"] = self.forbidden * 1e6 / self.iterations if self.iterations else 0
        return data


@dataclass
class LibraryReport:
    library: str
    cpu: str
    machine: str
    seed: int
    shapes: list[ShapeResult] = field(default_factory=list)
    verdict: str = ""                   # read-seqcst: observed / conclusive / inconclusive
    reference_rate: float = 0.0         # read-reference's lower bound
    failed_facts: tuple[str, ...] = ()
    credited_facts: tuple[str, ...] = ()
    unchecked: dict[str, str] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    detail: str = ""

    @property
    def controls_ok(self) -> bool:
        return all(s.forbidden == 0 and s.poisoned_reads == 0 for s in self.shapes if s.control)

    @property
    def exit_status(self) -> int:
        # A control that counts anything is impossible under any model: a broken harness, or
        # a library that is wrong even sequentially; a failed check either way (1, as in
        # `hazards`).  Setup errors (a library that cannot be loaded) are usage errors.
        if self.errors:
            return 2
        return 1 if self.failed_facts or not self.controls_ok else 0

    def to_json(self) -> dict[str, Any]:
        return {"library": self.library, "cpu": self.cpu, "machine": self.machine,
                "seed": self.seed, "verdict": self.verdict,
                "reference_rate": self.reference_rate, "ratio": RATIO,
                "decide_rule": f"observed at the first forbidden outcome; conclusive when the "
                               f"Wilson 95% upper bound is below {RATIO} x the read-reference "
                               "lower bound; else inconclusive on this machine",
                "zero_means": ZERO_MEANS, "interval_method": INTERVAL_METHOD,
                "failed_facts": list(self.failed_facts),
                "credited_facts": list(self.credited_facts),
                "unchecked": self.unchecked, "unchecked_elsewhere": ELSEWHERE,
                "controls_ok": self.controls_ok, "errors": self.errors, "detail": self.detail,
                "shapes": [s.to_json() for s in self.shapes]}


def driver_path() -> Path:
    """reference_c/build/harness/qsbr-cabi-litmus, built with make on first use."""
    try:
        folder = sources.workspace()
    except sources.SourcesNotFound as exc:
        raise LitmusSetupError(str(exc)) from None
    path = folder / "build" / "harness" / "qsbr-cabi-litmus"
    inputs = [folder / "harness" / "cabi_litmus.c", folder / "include" / "qsbr_api.h",
              folder / "litmus" / "litmus_core.h"]
    if not inputs[0].exists():
        raise LitmusSetupError(f"the litmus driver's source {inputs[0]} is missing")
    if not path.exists() or path.stat().st_mtime < max(p.stat().st_mtime for p in inputs):
        if not shutil.which("make"):
            raise LitmusSetupError("building the litmus driver needs make and a C compiler")
        proc = subprocess.run(["make", "-C", str(folder), "--no-print-directory",
                               "build/harness/qsbr-cabi-litmus"], capture_output=True,
                              text=True)
        if proc.returncode != 0:
            raise LitmusSetupError("cannot build the litmus driver:\n" + proc.stdout
                                   + proc.stderr)
    return path


_RESULT = re.compile(r"^RESULT\t(.*)$", re.M)


def run_shape(library: str, shape: str, control: bool, iterations: int,
              seed: int) -> ShapeResult:
    command = [str(driver_path()), os.path.abspath(library), shape, str(int(control)),
               str(iterations), str(seed)]
    proc = subprocess.run(command, capture_output=True, text=True)
    match = _RESULT.search(proc.stdout)
    if proc.returncode != 0 or match is None:
        raise LitmusSetupError(f"{' '.join(command)}: exit {proc.returncode}: "
                               f"{proc.stderr.strip()[-400:]}")
    fields = match.group(1).split("\t")
    iterations, forbidden, reached, old_seen, freed, poisoned = map(int, fields[2:8])
    return ShapeResult(shape, control, iterations, forbidden, reached, old_seen, freed,
                       poisoned, pinned=fields[8], goal=fields[9],
                       commands=[" ".join(["qsbr-cabi-litmus", *command[1:]])])


def run_library(path: str, *, seed: int = 1, max_iterations: int = MAX_ITERATIONS,
                batch: int = BATCH, hazards: bool = True,
                progress: Any = None) -> LibraryReport:
    """The litmus of ``path``: the reference rate, read-seqcst under the decide rule and its
    control, and (``hazards``) the callers' hazard shapes as rates."""
    say = progress or (lambda _line: None)
    if not os.path.exists(path):
        raise LitmusSetupError(f"no library at {path}")
    report = LibraryReport(os.path.abspath(path), cpu_model(), platform.machine(), seed)
    say(f"read-seqcst control, {CONTROL_ITERATIONS} iterations")
    report.shapes.append(run_shape(path, "read-seqcst", True, CONTROL_ITERATIONS, seed))
    # The reference and the shape in alternating batches, so that both see the same load on
    # the machine (the rates move tenfold with it), decided after each pair.
    say(f"read-reference and read-seqcst, alternating batches of {batch // 2} and {batch}, "
        f"up to {max_iterations} iterations of read-seqcst")
    reference, read = ShapeResult("read-reference", False), ShapeResult("read-seqcst", False)
    low, n = 0.0, 0
    while read.iterations < max_iterations:
        reference.add(run_shape(path, "read-reference", False, batch // 2, seed + n))
        read.add(run_shape(path, "read-seqcst", False,
                           min(batch, max_iterations - read.iterations), seed + 1000 + n))
        n += 1
        low = wilson(reference.forbidden, reference.iterations)[0]
        if decide(read.forbidden, read.iterations, low) != "inconclusive":
            break
    report.shapes += [reference, read]
    report.reference_rate = low
    if hazards:
        for shape in ("stale-goal", "stale-goal-advancing", "retire-before-unlink",
                      "sb-reference"):
            say(f"{shape}, {batch} iterations (and its control)")
            report.shapes.append(run_shape(path, shape, False, batch, seed))
            report.shapes.append(run_shape(path, shape, True, CONTROL_ITERATIONS, seed))
    report.verdict = decide(read.forbidden, read.iterations, low)
    tso = platform.machine().lower() in TSO_MACHINES
    facts = READ_FACTS if tso else (*READ_FACTS, "S-POLL-1")
    if not report.controls_ok:
        report.errors.append("a control counted a forbidden outcome: the harness is broken "
                             "on this machine (no verdict)")
    elif report.verdict == "observed":
        report.failed_facts = facts
        report.detail = (f"read-seqcst: {read.forbidden} of {read.iterations} iterations the "
                         "writer's poll reached the goal while the reader, attached, loaded "
                         "the old pointer (and read it after it was poisoned "
                         f"{read.poisoned_reads} times): attach's store is weaker than "
                         "seq_cst" + ("" if tso else ", or the scan does not fence"))
    elif report.verdict == "conclusive":
        report.credited_facts = HARDWARE_FACTS
        high = wilson(0, read.iterations)[1]
        report.detail = (f"read-seqcst: 0 of {read.iterations} iterations; rate below "
                         f"{high:.2e}, under {RATIO} x the reference rate {low:.2e}")
    else:
        report.detail = (f"read-seqcst: 0 of {read.iterations} iterations, inconclusive on "
                         f"this machine: the reference showed {reference.forbidden} of "
                         f"{reference.iterations} (lower bound {low:.2e}), so a bug at "
                         f"{RATIO} x that rate could have hidden")
    if tso:
        report.unchecked = dict(UNCHECKED_ON_TSO)
    else:
        report.unchecked = {fact: text for fact, text in UNCHECKED_ON_TSO.items()
                            if fact != "S-POLL-1"}
    return report


def render(report: LibraryReport) -> str:
    lines = [f"hazards of {report.library} on {report.cpu} ({report.machine}), seed "
             f"{report.seed}"]
    for s in report.shapes:
        low, high = s.interval
        lines.append(f"  {s.shape:22} {'control' if s.control else '       '} "
                     f"{s.forbidden:6d} / {s.iterations:7d}  [{low * 1e6:9.1f}, "
                     f"{high * 1e6:9.1f}] per million  pinned {s.pinned}  goal {s.goal}")
    lines.append(f"read-seqcst: {report.verdict}"
                 + (" on this machine" if report.verdict == "inconclusive" else "")
                 + f": {report.detail}")
    if report.failed_facts:
        lines.append(f"FAIL {', '.join(report.failed_facts)}")
    if report.credited_facts:
        lines.append(f"hardware-checked: {', '.join(report.credited_facts)}")
    for fact, text in report.unchecked.items():
        lines.append(f"unchecked by hardware here: {fact}: {text}")
    if report.unchecked:
        lines.append(f"  check those with: {ELSEWHERE}")
    lines += [f"error: {e}" for e in report.errors]
    lines.append(ZERO_MEANS)
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    """``qsbr-conformance hazards --library LIB`` (hook: conformance/frontends/hazards_cli)."""
    parser = argparse.ArgumentParser(
        prog="qsbr-conformance hazards --library",
        description="The hardware litmus of a C ABI library's orderings.  Exit status 0: no "
                    "forbidden outcome; 1: a forbidden outcome was observed, or a control counted "
                    "one (a broken harness or library); 2: usage error.")
    parser.add_argument("--library", required=True, metavar="PATH")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--max-iterations", type=int, default=MAX_ITERATIONS)
    parser.add_argument("--batch", type=int, default=BATCH)
    parser.add_argument("--json", metavar="PATH")
    parser.add_argument("-q", "--quiet", action="store_true")
    args = parser.parse_args(argv)
    if args.max_iterations <= 0 or args.batch <= 0:
        print("qsbr-conformance hazards: --max-iterations and --batch must be > 0",
              file=sys.stderr)
        return 2
    try:
        report = run_library(args.library, seed=args.seed, max_iterations=args.max_iterations,
                             batch=args.batch,
                             progress=None if args.quiet else
                             (lambda line: print(line, file=sys.stderr, flush=True)))
    except LitmusSetupError as exc:
        print(f"qsbr-conformance hazards: {exc}", file=sys.stderr)
        return 2
    print(render(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report.to_json(), indent=2) + "\n",
                                   encoding="utf-8")
    return report.exit_status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
