"""The concurrency torture of any library that exports the QSBR C ABI (include/qsbr_api.h).

Runs the C driver ``reference_c/harness/cabi_torture.c`` (built on first use with make) as a
child process: it loads the library with dlopen(), so a crash is a failed run, never a crashed
harness.  Its "error FACT: detail" lines name the broken facts; in ThreadSanitizer mode
(``tsan=True``: the TSan-built driver, for a library built with ``-fsanitize=thread``) each
data race report is also turned into facts:

- a race inside a library call names that call's fact (the outermost ``qsbr_api_*`` frame of
  each stack: reserve -> S-RES-1, advance -> S-ADV-1, poll -> S-POLL-1, ...);
- a race between a reader's read of an object and the writer that reclaimed it names the edge
  that should have ordered them: the driver makes every reader check under a function
  whose name ends ``_then_detach`` or ``_then_quiesce`` (how that section ends), and the
  writer poisons a reclaimed object in ``tc_release``.  TSan cannot tell the release side
  from the acquire side, so a race after a detach names S-DETACH-1 and S-POLL-1 (the detach
  store or the scan's loads), after a quiescent state S-QS-1 and S-POLL-1; races after both
  (seen when the run does not stop at the first error) name only S-POLL-1, the side both
  edges share.

With ``history=True`` the first rounds record every operation, and the contract oracle
(conformance.checks.contract) judges that history independently of CPython's algorithm.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from .. import sources
from .contract import ContractResult

#: the outermost qsbr_api_* frame of a race's stack -> the fact it breaks
API_FACTS = {
    "qsbr_api_reserve": "S-RES-1", "qsbr_api_register": "S-REG-1",
    "qsbr_api_unregister": "S-UNREG-1", "qsbr_api_attach": "S-ATTACH-1",
    "qsbr_api_detach": "S-DETACH-1", "qsbr_api_quiescent_state": "S-QS-1",
    "qsbr_api_advance": "S-ADV-1", "qsbr_api_poll": "S-POLL-1",
    "qsbr_api_deferred_advance": "S-DEF-1", "qsbr_api_shared_next": "S-DEF-2",
    "qsbr_api_tstate_slot": "S-RES-1", "qsbr_api_tstate_delete": "S-UNREG-1",
    "qsbr_api_interp_delete": "S-FINI-1",
}
#: the facts a clean run of the plain torture credits as checked concurrently: only those whose
#: kind of bug it can fail (docs/concurrency.md, "What each check can fail"): a lost advance
#: (S-ADV-1), a growth without stop-the-world, a wrong index or a leaked array (S-RES-1), a lost
#: freelist update or a leaked slot (the state check: S-REG-1, S-UNREG-1), a goal never reached
#: or reached too early by the protocol (S-POLL-2, S-SAFE-1, S-SAFE-2).  Not the memory orders
#: of attach, detach, quiescent_state and the scan (S-ATTACH-1, S-DETACH-1, S-QS-1, S-POLL-1):
#: a plain run on x86-64 cannot fail a relaxed detach; those come from the hardware litmus
#: (conformance.checks.hw_phase), the TSan mode or the model checker.
CHECKED_FACTS = ("S-ADV-1", "S-POLL-2", "S-RES-1", "S-REG-1", "S-UNREG-1", "S-SAFE-1",
                 "S-SAFE-2")


class TortureSetupError(Exception):
    """The driver could not be built or run (not a verdict on the implementation)."""


@dataclass
class CabiTortureResult:
    status: int                         # 0 pass, 1 errors, 2 nothing freed
    errors: dict[str, list[str]] = field(default_factory=dict)   # fact -> details
    counters: str = ""
    output: str = ""
    tsan_reports: int = 0
    contract: ContractResult | None = None      # when a history was judged
    #: the first races' two stacks, top frames with file:line (tsan_stacks)
    stacks: str = ""
    #: the driver's command line, which reruns this torture (same seed, same bound)
    command: list[str] = field(default_factory=list)

    @property
    def counter_values(self) -> dict[str, dict[str, float]]:
        """The driver's "final" and "errors:" lines as numbers: {"final": {"updates": ...}}."""
        values: dict[str, dict[str, float]] = {}
        for line in self.counters.splitlines():
            head, _, rest = line.partition(" ")
            numbers = {key: float(value) if "." in value else int(value)
                       for key, value in re.findall(r"(\w+)=(-?\d+(?:\.\d+)?)", rest)}
            values[head.rstrip(":")] = numbers
        return values

    @property
    def failed_facts(self) -> list[str]:
        return sorted(self.errors)

    def verdict(self) -> str:
        if self.status == 0:
            return "PASS: no reader saw reclaimed memory, and reclamation progressed"
        if self.errors:
            return "FAIL: " + "; ".join(f"{fact}: {details[0]}"
                                        for fact, details in sorted(self.errors.items()))
        return {2: "FAIL: nothing was reclaimed (no progress)"}.get(
            self.status, f"FAIL: the driver exited with status {self.status}")


def driver_path(tsan: bool = False) -> Path:
    """The driver binary, built with make into reference_c/build/harness on first use."""
    name = "qsbr-cabi-torture-tsan" if tsan else "qsbr-cabi-torture"
    try:
        folder = sources.workspace()
    except sources.SourcesNotFound as exc:
        raise TortureSetupError(str(exc)) from None
    path = folder / "build" / "harness" / name
    source = folder / "harness" / "cabi_torture.c"
    if not source.exists():
        raise TortureSetupError(f"the torture driver's source {source} is missing (it ships "
                                "with the repository's reference_c/)")
    # Its sources: the driver, the torture core it shares with the port's torture, the ABI.
    inputs = [source, folder / "harness" / "torture_core.h", folder / "include" / "qsbr_api.h"]
    newest = max(p.stat().st_mtime for p in inputs if p.exists())
    if not path.exists() or path.stat().st_mtime < newest:
        if not shutil.which("make"):
            raise TortureSetupError("building the torture driver needs make and a C compiler")
        proc = subprocess.run(["make", "-C", str(folder), "--no-print-directory",
                               f"build/harness/{name}"], capture_output=True, text=True)
        if proc.returncode != 0:
            raise TortureSetupError("cannot build the torture driver:\n" + proc.stdout
                                    + proc.stderr)
    return path


def library_has_tsan(library: str) -> bool:
    with open(library, "rb") as handle:
        return b"__tsan_" in handle.read()


_ERROR = re.compile(r"^error (\S+): (.*)$", re.M)
_FRAME = re.compile(r"^\s+#\d+ (\S+) ")
#: the torture core's function that poisons a reclaimed object (harness/torture_core.h)
RELEASE_FRAME = "tc_release"
#: the driver's writer thread (harness/cabi_torture.c), the one thread that reclaims
WRITER_FRAME = "writer_main"
#: the torture core's reader checks (harness/torture_core.h); the driver calls them only under
#: functions whose names end with one of EDGE_SUFFIXES
READER_CHECKS = ("tc_check_object", "tc_read_section", "tc_hold_across_yield")
EDGE_SUFFIXES = {"_then_detach": "detach", "_then_quiesce": "quiescent state"}


_FRAME_LINE = re.compile(r"^\s+#(\d+) (\S+) (\S+?)(?: \(|$)")


def tsan_stacks(output: str, races: int = 3, frames: int = 4) -> str:
    """The first ``races`` ThreadSanitizer reports of ``output``, each as its kind and its two
    access stacks' top ``frames`` frames (function and file:line), for a porter to act on."""
    lines: list[str] = []
    for report in output.split("WARNING: ThreadSanitizer:")[1:races + 1]:
        body = report.split("SUMMARY:")[0]
        lines.append("race: " + report.splitlines()[0].strip())
        for stack in re.split(r"\n\s*\n", body)[:2]:
            head = stack.strip().splitlines()
            if not head:
                continue
            # the access line ("Write of size 8 at 0x... by thread T5:") above the frames
            titles = [line.strip().rstrip(":") for line in head
                      if not line.lstrip().startswith("#") and line.rstrip().endswith(":")]
            title = titles[-1] if titles else "stack"
            shown = [f"    {m.group(2)} {m.group(3)}" for line in head
                     if (m := _FRAME_LINE.match(line))][:frames]
            if shown:
                lines.append(f"  {title}:")
                lines += shown
    return "\n".join(lines)


def _tsan_logs(options: str, since: float) -> str:
    """The reports TSan wrote to ``log_path`` files (TSAN_OPTIONS=log_path=P writes P.PID)
    since ``since``, so that a race is a failed check whatever TSAN_OPTIONS says."""
    match = re.search(r"(?:^|[\s:])log_path=([^\s:]+)", options)
    if not match or match.group(1) in ("stdout", "stderr"):
        return ""
    import glob
    texts = []
    for name in sorted(glob.glob(glob.escape(match.group(1)) + ".*")):
        try:
            if os.path.getmtime(name) >= since:
                with open(name, encoding="utf-8", errors="replace") as handle:
                    texts.append(handle.read())
        except OSError:
            continue
    return "\n".join(texts)


def tsan_facts(output: str) -> dict[str, list[str]]:
    """Facts named by the ThreadSanitizer reports in ``output`` (see the module docstring)."""
    facts: dict[str, list[str]] = {}
    edges: set[str] = set()
    unknown_edge = False
    reports = output.split("WARNING: ThreadSanitizer:")[1:]
    for report in reports:
        kind = report.splitlines()[0].split("(")[0].strip()
        body = report.split("SUMMARY:")[0]
        named: list[str] = []
        reclaim = edge_seen = False
        for stack in re.split(r"\n\s*\n", body):
            frames = [m.group(1) for line in stack.splitlines() if (m := _FRAME.match(line))]
            api = [f for f in frames if f in API_FACTS]
            if api:
                named.append(API_FACTS[api[-1]])
            # The driver runs every reader check under a function named for how its
            # section ends (..._then_detach, ..._then_quiesce).
            for suffix, edge in EDGE_SUFFIXES.items():
                if any(f.endswith(suffix) for f in frames):
                    edges.add(edge)
                    edge_seen = True
            if RELEASE_FRAME in frames and WRITER_FRAME in frames:
                reclaim = True      # a writer poisoning an object it reclaimed
        # The reclamation raced a read whose stack TSan could no longer restore (its history
        # is bounded): a premature reclamation all the same, the edge unknown.
        unknown_edge |= reclaim and not edge_seen and not named
        for fact in dict.fromkeys(named):
            facts.setdefault(fact, []).append(
                f"ThreadSanitizer: {kind} inside the library's calls "
                f"({', '.join(dict.fromkeys(named))})")
    if edges:
        # The release side (the reader's detach or quiescent state) or the acquire side (the
        # poller's scan) is missing; TSan cannot say which.  Both edges failing points at the
        # side they share, the scan.
        if len(edges) == 2:
            named, why = ["S-POLL-1"], "the scan (poll) acquires neither edge"
        else:
            edge = next(iter(edges))
            named = ["S-DETACH-1" if edge == "detach" else "S-QS-1", "S-POLL-1"]
            why = (f"either the {edge} store does not release the reader's accesses, or the "
                   "scan (poll) does not acquire it")
        detail = ("ThreadSanitizer: a reader's read races with the reclamation of the object "
                  f"after a grace period ended by {' and by '.join(sorted(edges))}: {why}")
        for fact in named + ["S-SAFE-1"]:
            facts.setdefault(fact, []).append(detail)
    elif unknown_edge:
        detail = ("ThreadSanitizer: the reclamation of an object races with a reader's earlier "
                  "read (TSan could not restore the reader's stack, so whether its section "
                  "ended by detach or by a quiescent state is unknown): the reader's release "
                  "edge or the scan (poll) acquiring it is missing")
        for fact in ("S-POLL-1", "S-SAFE-1"):
            facts.setdefault(fact, []).append(detail)
    return facts


#: reserve/register/unregister steps per churning thread and round (plain; TSan: a tenth)
CHURN = 6000


def run(library: str, *, rounds: int = 0, seconds: float = 0.0, readers: int = 3,
        writers: int = 2, reservers: int = 2, slots: int = 40, updates: int = 2000,
        seed: int = 1, stop_on_error: bool = True, tsan: bool = False,
        churn: int | None = None,
        history: bool = False, history_rounds: int = 2, timeout: float | None = None,
        progress: bool = False) -> CabiTortureResult:
    """Run the driver against ``library``; stops after ``rounds`` rounds or ``seconds``."""
    from ..drivers.patience import run_watched
    if not os.path.exists(library):
        raise TortureSetupError(f"no library at {library}")
    if rounds <= 0 and seconds <= 0:
        raise ValueError("give rounds > 0 or seconds > 0")
    command = [str(driver_path(tsan)), os.path.abspath(library), "-r", str(readers),
               "-w", str(writers), "-g", str(reservers), "-k", str(slots), "-u", str(updates),
               "-c", str(churn if churn is not None else CHURN // 10 if tsan else CHURN),
               "-S", str(seed)]
    command += ["-n", str(rounds)] if rounds > 0 else []
    command += ["-s", str(seconds)] if seconds > 0 else []
    command += ["-x"] if stop_on_error else []
    command += [] if progress else ["-q"]
    env = dict(os.environ)
    if tsan:
        # Stopping at the first error ends the run at the first race; otherwise every distinct
        # race is reported, so that both edges can be seen (the run is bounded anyway).
        # history_size=7 (the most): fewer "failed to restore the stack" in the reports
        env["TSAN_OPTIONS"] = (f"halt_on_error={int(stop_on_error)}:report_signal_unsafe=0:"
                               "history_size=7 "
                               + env.get("TSAN_OPTIONS", ""))
        command = ["setarch", platform.machine(), "-R"] + command
    rerun = list(command)       # without the history file, which is temporary
    with tempfile.TemporaryDirectory() as tmp:
        history_path = os.path.join(tmp, "history.bin")
        if history:
            command += ["-H", history_path, "-E", str(history_rounds)]
        # The bound is charged as conformance.drivers.patience does: time the driver's
        # threads spent waiting for a CPU behind other processes is not counted, so a busy
        # machine makes the run slower, never a hang.
        limit = timeout if timeout is not None else (seconds * 3 + 120 if seconds else 600)
        import time
        started = time.time() - 1
        proc = run_watched(command, budget=limit, env=env, what="the C ABI torture driver")
        if proc.hung is not None:
            return CabiTortureResult(1, {"S-SAFE-2": [f"the run hung: {proc.hung} (a "
                                                      "deadlock or a grace period that never "
                                                      "ends)"]}, output=proc.stdout)
        output = proc.stdout + proc.stderr
        if tsan:
            output += _tsan_logs(os.environ.get("TSAN_OPTIONS", ""), started)
        errors: dict[str, list[str]] = {}
        for fact, detail in _ERROR.findall(proc.stdout):
            errors.setdefault(fact, []).append(detail)
        reports = output.count("WARNING: ThreadSanitizer:")
        if tsan:
            for fact, details in tsan_facts(output).items():
                errors.setdefault(fact, []).extend(details)
        status = proc.returncode
        assert status is not None       # ended by itself (a hang returned above)
        # TSan's own exit status (66) without a race report: a crash TSan caught ("ERROR:
        # ThreadSanitizer: SEGV ..."), which is the library's failure, not a setup error.
        crash = next((line.strip() for line in output.splitlines()
                      if "ERROR: ThreadSanitizer" in line), "")
        if status == 66 and not reports and crash:
            errors.setdefault("S-SAFE-1", []).append(
                f"the library crashed under ThreadSanitizer ({crash}): a crash in the "
                "library, or a read of reclaimed memory")
        if status in (64, 65) or (status == 66 and not reports and not crash):
            raise TortureSetupError(output.strip().splitlines()[-1] if output.strip()
                                    else f"the driver exited with {status}")
        if status < 0:
            errors.setdefault("S-SAFE-1", []).append(
                f"the driver died with signal {-status} (a crash in the library, or a read "
                "of reclaimed memory)")
        if status not in (0, 1, 2) or reports:
            status = 1
        counters = "\n".join(line for line in proc.stdout.splitlines()
                             if line.startswith(("final", "errors:")))
        result = CabiTortureResult(status if errors or status == 2 else 0 if status == 0
                                   else 1, errors, counters, output, reports,
                                   stacks=tsan_stacks(output) if reports else "",
                                   command=rerun)
        if history and os.path.exists(history_path):
            from . import contract
            result.contract = contract.judge_file(history_path)
            assert result.contract is not None
            for fact, details in result.contract.errors.items():
                result.errors.setdefault(fact, []).extend(f"contract oracle: {d}"
                                                          for d in details)
            if result.contract.errors:
                result.status = 1
        return result
