"""The target of a conformance run: which implementation, reached how, resolved once.

Front ends turn ``--impl``/``--profile``/``--isolate`` (or the pytest plugin's options) into one
:class:`Target` with :func:`resolve`; the runner opens it (:meth:`Target.open`) and every phase
asks the target, never the option strings, what it is dealing with:

- ``kind``: ``"reference"`` (the reference C port through the Cython bridge), ``"cabi"`` (a C,
  C++ or Rust library exporting ``qsbr_api.h``, loaded by ``conformance.cabi:from_env``) or
  ``"python"`` (any other adapter);
- ``profile``: the release profile asked for (``--profile``; ``auto`` resolved here), or None for
  the factory's default;
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
from dataclasses import dataclass, field
from typing import Any

from ..model import profiles
from ..model.adapter import AdapterError, load_implementation
from ..model.errors import QsbrError

#: The built-in implementation: the reference C port through the Cython bridge.
REFERENCE_IMPL = "conformance.reference:reference_port"
#: Factories that load a C ABI library named by $QSBR_LIBRARY.
CABI_FACTORIES = ("conformance.cabi:from_env", "conformance.drivers.cabi:from_env")
#: Default bound on the isolated child's start-up (imports, the factory call), seconds.
STARTUP_TIMEOUT = 120.0
#: Default bound on one call of an isolated implementation, seconds of charged time.
STEP_TIMEOUT = 10.0


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
    #: the release profile asked for (a range name), or None: the factory's default
    profile: str | None = None
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
        if self.spec in CABI_FACTORIES:
            return "cabi"
        return "python"

    @property
    def line(self) -> str | None:
        return profiles.line_of(self.profile) if self.profile is not None else None

    def factory_kwargs(self) -> dict[str, Any]:
        """What the factory is called with (see the module docstring)."""
        kwargs = dict(self.kwargs)
        if self.profile is not None:
            kwargs["profile"] = profiles.line_of(self.profile)
            if self.profile not in ("3.13", "3.14"):
                # load_implementation passes it on only when the factory takes it
                kwargs["release"] = profiles.resolve(self.profile).name
        return kwargs

    def open(self) -> Any:
        """Load the implementation (in a child process when isolated); TargetError (one
        line) for every way loading can fail, including a profile other than the one asked
        for.  The caller closes an isolated implementation (``close()``)."""
        from .isolation import IsolatedImplementation

        kwargs = self.factory_kwargs()
        try:
            if self.isolate:
                impl: Any = IsolatedImplementation(self.spec, step_timeout=self.step_timeout,
                                                   startup_timeout=self.startup_timeout,
                                                   **kwargs)
            else:
                impl = load_implementation(self.spec, **kwargs)
        except (AdapterError, QsbrError) as exc:
            raise TargetError(f"cannot load {self.spec}: {exc}") from None
        if self.profile is not None and not _profile_matches(impl, self.profile):
            close(impl)
            raise TargetError(f"{self.spec} gave profile "
                              f"{getattr(impl, 'release', None) or impl.profile}, not "
                              f"{self.profile}")
        return impl

    def describe(self) -> dict[str, Any]:
        return {"spec": self.spec, "kind": self.kind, "profile": self.profile,
                "isolate": self.isolate, "library": self.library}


def resolve(spec: str = REFERENCE_IMPL, profile: str | None = None, *,
            isolate: bool | None = None, step_timeout: float = STEP_TIMEOUT,
            startup_timeout: float = STARTUP_TIMEOUT) -> Target:
    """The target for these options: ``profile`` "auto" becomes the running interpreter's
    release profile, an alias stays as given (the factory's line is derived from it), and
    isolation defaults to on for every implementation but the built-in reference port."""
    if profile == "auto":
        try:
            profile = profiles.resolve("auto").name
        except profiles.UnknownRelease as exc:
            raise TargetError(f"--profile auto: {exc}") from None
    elif profile is not None:
        try:
            profiles.resolve(profile)
        except profiles.UnknownRelease as exc:
            raise TargetError(str(exc)) from None
    if isolate is None:
        isolate = spec != REFERENCE_IMPL
    library = os.environ.get("QSBR_LIBRARY") if spec in CABI_FACTORIES else None
    return Target(spec=spec, profile=profile, isolate=isolate, step_timeout=step_timeout,
                  startup_timeout=startup_timeout, library=library)


def close(impl: Any) -> None:
    if hasattr(impl, "close"):
        impl.close()


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
