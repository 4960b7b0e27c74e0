"""The target of a conformance run: which implementation, reached how, resolved once.

Front ends turn ``--impl``/``--profile``/``--isolate`` (or the pytest plugin's options) into one
:class:`Target` with :func:`resolve`; the runner opens it (:meth:`Target.open`) and every phase
asks the target, never the option strings, what it is dealing with.  Every path that loads an
implementation (a run, the plugin, replay, a campaign and its workers, bench, mutants, upstream)
opens a Target; a report records it (:meth:`Target.to_json`) and replay reopens exactly that
(:meth:`Target.from_json`), in this process or in a child (the same JSON).

- ``kind``: ``"reference"`` (the reference C port through the Cython bridge), ``"cabi"`` (a C,
  C++ or Rust library exporting ``qsbr_api.h``, loaded by ``conformance.cabi:from_env`` or
  ``conformance.cabi:load``) or ``"python"`` (any other adapter);
- ``release``: the release profile asked for (``--profile``: a line, an alias or a range;
  ``auto`` resolved here), or None for the factory's default; ``line`` is its API line;
- ``library``: for kind ``cabi``, the library's path (``$QSBR_LIBRARY`` when the target was
  resolved): a recorded target reopens that library whatever the environment says;
- ``isolate``: the implementation runs in a child process (a crash or a hang is a failure of
  the step that caused it);
- after :meth:`Target.open`, ``capabilities`` says what the implementation declares
  (``thread_safe``, ``live_allocations``, ``layout``), whether it runs isolated or not.

The factory is called as ``FACTORY(profile=LINE)``, where LINE is the API line ("3.13" or
"3.14") of the profile asked for, plus ``release=RANGE`` (e.g. "3.13.6-3.14.3") when its
signature accepts a ``release`` keyword (docs/adapter-protocol.md).
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass, field
from typing import Any

from ..model import profiles
from ..model.adapter import AdapterError, load_implementation
from ..model.errors import QsbrError
from .isolation import STARTUP_TIMEOUT, STEP_TIMEOUT, IsolatedImplementation

#: The built-in implementation: the reference C port through the Cython bridge.
REFERENCE_IMPL = "conformance.reference:reference_port"
#: Factories that load a C ABI library named by $QSBR_LIBRARY.
CABI_FACTORIES = ("conformance.cabi:from_env", "conformance.drivers.cabi:from_env")
#: Factories that load a C ABI library named by their ``path`` keyword.
CABI_LOADERS = ("conformance.cabi:load", "conformance.drivers.cabi:load")
#: What a C ABI target with a known library is opened with (``path=LIBRARY``).
_CABI_LOAD = "conformance.drivers.cabi:load"


class TargetError(ValueError):
    """The target cannot be loaded (bad spec, import error, wrong profile): a usage error."""


@dataclass(frozen=True)
class Capabilities:
    """What the implementation declares (docs/adapter-protocol.md), as seen by the runner."""

    thread_safe: bool = False
    live_allocations: bool = False
    layout: bool = False
    name: str = ""
    version: str = ""
    line: str = ""                  # the API line: "3.13" or "3.14"
    release: str | None = None      # the release profile it declares, if any

    @classmethod
    def of(cls, impl: Any) -> Capabilities:
        return cls(thread_safe=getattr(impl, "thread_safe", False) is True,
                   live_allocations=callable(getattr(impl, "live_allocations", None)),
                   layout=callable(getattr(impl, "layout", None)),
                   name=str(impl.name), version=str(impl.version), line=str(impl.profile),
                   release=getattr(impl, "release", None))


@dataclass(frozen=True)
class Target:
    spec: str = REFERENCE_IMPL
    #: the release profile asked for (a line, an alias or a range), or None: the factory's
    #: default
    release: str | None = None
    isolate: bool = False
    step_timeout: float = STEP_TIMEOUT
    startup_timeout: float = STARTUP_TIMEOUT
    #: for kind "cabi": the library ($QSBR_LIBRARY when the target was resolved)
    library: str | None = None
    #: extra keyword arguments for the factory (tests)
    kwargs: tuple[tuple[str, Any], ...] = field(default=())

    @property
    def kind(self) -> str:
        if self.spec == REFERENCE_IMPL:
            return "reference"
        if self.spec in CABI_FACTORIES or self.spec in CABI_LOADERS:
            return "cabi"
        return "python"

    @property
    def line(self) -> str | None:
        """The API line asked for ("3.13" or "3.14"), or None: the factory's default."""
        return profiles.line_of(self.release) if self.release is not None else None

    def loader(self) -> tuple[str, dict[str, Any]]:
        """The factory that opens this target and its keyword arguments (see the module
        docstring): a C ABI target with a recorded library is opened from that path, not
        from whatever ``$QSBR_LIBRARY`` says now."""
        kwargs = dict(self.kwargs)
        spec = self.spec
        if self.kind == "cabi" and self.library is not None:
            spec = _CABI_LOAD
            kwargs["path"] = self.library
        if self.release is not None:
            kwargs["profile"] = profiles.line_of(self.release)
            if self.release not in ("3.13", "3.14"):
                # load_implementation passes it on only when the factory takes it
                kwargs["release"] = profiles.resolve(self.release).name
        return spec, kwargs

    def factory_kwargs(self) -> dict[str, Any]:
        """What the factory is called with (see the module docstring)."""
        return self.loader()[1]

    def open(self) -> Any:
        """Load the implementation (in a child process when isolated); TargetError (one
        line) for every way loading can fail, including a profile other than the one asked
        for.  The caller closes an isolated implementation (``close()``)."""
        spec, kwargs = self.loader()
        try:
            if self.isolate:
                impl: Any = IsolatedImplementation(spec, step_timeout=self.step_timeout,
                                                   startup_timeout=self.startup_timeout,
                                                   **kwargs)
            else:
                impl = load_implementation(spec, **kwargs)
        except (AdapterError, QsbrError) as exc:
            raise TargetError(f"cannot load {self.spec}{self._library_note()}: {exc}") from None
        if self.release is not None and not _profile_matches(impl, self.release):
            close(impl)
            raise TargetError(f"{self.spec} gave profile "
                              f"{getattr(impl, 'release', None) or impl.profile}, not "
                              f"{self.release}")
        return impl

    def _library_note(self) -> str:
        return f" (library {self.library})" if self.library is not None else ""

    def environment(self) -> dict[str, str]:
        """The environment variables a command line needs to reach this target again
        (``QSBR_LIBRARY`` for a C ABI library loaded through ``from_env``)."""
        if self.spec in CABI_FACTORIES and self.library is not None:
            return {"QSBR_LIBRARY": self.library}
        return {}

    def command_prefix(self) -> list[str]:
        """``VAR=value`` words that go before a pasted command line (shell syntax)."""
        return [f"{name}={shlex.quote(value)}" for name, value in self.environment().items()]

    def identity(self, line: str | None = None, release: str | None = None) -> str:
        """What identifies the implementation across runs and rebuilds (database keys): the
        kind and spec (for a C ABI library, the version its library reports if it exports
        ``qsbr_api_version``, never its file name), the API line and the release: those the
        opened implementation declares when given (so ``--profile 3.13`` and the factory's
        default 3.13 share a key), else those asked for.  docs/campaigns.md describes it."""
        parts = [self.kind, self.spec if self.kind != "cabi" else "cabi"]
        if self.kind == "cabi":
            version = _library_version(self.library)
            if version:
                parts.append(f"version={version}")
        parts += [f"line={line or self.line or ''}",
                  f"release={release or self._release_name() or ''}"]
        parts += [f"{name}={value!r}" for name, value in sorted(self.kwargs)
                  if name != "path"]
        return "|".join(parts)

    def _release_name(self) -> str | None:
        if self.release is None or self.release in ("3.13", "3.14"):
            return None
        return profiles.resolve(self.release).name

    def to_json(self) -> dict[str, Any]:
        """The target as the report records it and as a child process receives it."""
        return {"kind": self.kind, "spec": self.spec, "release": self.release,
                "line": self.line, "library": self.library, "isolate": self.isolate,
                "step_timeout": self.step_timeout, "startup_timeout": self.startup_timeout,
                "kwargs": [[name, value] for name, value in self.kwargs]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Target:
        """The target :meth:`to_json` wrote (TargetError for something that is not one)."""
        try:
            return cls(spec=data["spec"], release=data.get("release"),
                       isolate=bool(data.get("isolate", False)),
                       step_timeout=float(data.get("step_timeout", STEP_TIMEOUT)),
                       startup_timeout=float(data.get("startup_timeout", STARTUP_TIMEOUT)),
                       library=data.get("library"),
                       kwargs=tuple((str(k), v) for k, v in data.get("kwargs") or ()))
        except (KeyError, TypeError, ValueError) as exc:
            raise TargetError(f"not a recorded target: {exc!r}") from None

    def describe(self) -> dict[str, Any]:
        return self.to_json()


def resolve(spec: str = REFERENCE_IMPL, release: str | None = None, *,
            isolate: bool | None = None, step_timeout: float = STEP_TIMEOUT,
            startup_timeout: float = STARTUP_TIMEOUT, library: str | None = None,
            kwargs: tuple[tuple[str, Any], ...] = ()) -> Target:
    """The target for these options: ``release`` "auto" becomes the running interpreter's
    release profile, an alias stays as given (the factory's line is derived from it), and
    isolation defaults to on for every implementation but the built-in reference port.  A C
    ABI target's library is ``library``, else the ``path`` keyword of a ``load`` spec, else
    ``$QSBR_LIBRARY`` now (recorded: a replay does not need it set again)."""
    if release == "auto":
        try:
            release = profiles.resolve("auto").name
        except profiles.UnknownRelease as exc:
            raise TargetError(f"--profile auto: {exc}") from None
    elif release is not None:
        try:
            profiles.resolve(release)
        except profiles.UnknownRelease as exc:
            raise TargetError(str(exc)) from None
    if isolate is None:
        isolate = spec != REFERENCE_IMPL
    given = dict(kwargs)
    if spec in CABI_LOADERS and library is None and "path" in given:
        library = str(given.pop("path"))
    elif spec in CABI_FACTORIES and library is None:
        library = os.environ.get("QSBR_LIBRARY") or None
    if spec in CABI_FACTORIES or spec in CABI_LOADERS:
        if library is not None:
            library = os.path.abspath(library) if os.sep in library else library
    elif library is not None:
        raise TargetError(f"{spec} is not a C ABI loader: it takes no library")
    return Target(spec=spec, release=release, isolate=isolate, step_timeout=step_timeout,
                  startup_timeout=startup_timeout, library=library,
                  kwargs=tuple(given.items()))


def close(impl: Any) -> None:
    if hasattr(impl, "close"):
        impl.close()


def _library_version(library: str | None) -> str | None:
    """The version string a C ABI library reports (its optional function ``const char
    *qsbr_api_version(void)``, docs/adapter-protocol.md), if it exports one."""
    if library is None:
        return None
    import ctypes
    try:
        lib = ctypes.CDLL(library)
        function = lib.qsbr_api_version
    except (OSError, AttributeError):
        return None
    function.argtypes, function.restype = [], ctypes.c_char_p
    text = function()
    return text.decode(errors="replace") if text else None


def _profile_matches(impl: Any, wanted: str) -> bool:
    """An implementation declares its API line (``profile``) and may declare its release
    profile (``release``); a line or alias asked for must match the line, a range the release
    where the implementation declares one."""
    if profiles.line_of(wanted) != impl.profile:
        return False
    release = getattr(impl, "release", None)
    if release is None or wanted in ("3.13", "3.14"):
        return True
    return profiles.resolve(wanted).name == release
