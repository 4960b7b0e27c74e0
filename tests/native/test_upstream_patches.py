"""docs/upstream/: the patches against CPython's own tree apply to their release's tarball.

Each ``NAME-X.Y.Z.patch`` is applied with ``patch -p1`` (a dry run, then for real, no fuzz) to
the files it names, extracted from that release's tarball into a temporary folder; the patched
file must then hold the fix (the fence before the load of ``wr_seq`` in the release's
non-advancing goal; the new keys published before the old ones are retired in dict_merge's
clone path), the pristine file must not, and the patch must carry a NEWS entry in CPython's
``Misc/NEWS.d/next/<section>/<date>.gh-issue-<n>.<nonce>.rst`` form.  The port's own
reference_c/fixes/stale-goal-fence.patch must add the same fence in the same two places.
"""

from __future__ import annotations

import re
import subprocess
import tarfile
from pathlib import Path

import pytest
from requires import RELEASES, tarball

ROOT = Path(__file__).resolve().parents[2]
UPSTREAM = ROOT / "docs" / "upstream"
FIXES = ROOT / "reference_c" / "fixes"
NAMES = ("stale-goal-fence", "dict-merge-order")
FENCE = "_Py_atomic_fence_seq_cst();"
NEWS = re.compile(r"Misc/NEWS\.d/next/Core_and_Builtins/"
                  r"\d{4}-\d\d-\d\d-\d\d-\d\d-\d\d\.gh-issue-\d+\.[A-Za-z0-9_-]+\.rst")


def patch_paths(patch: Path) -> list[str]:
    """The files a patch writes (its ``+++ b/...`` lines)."""
    return re.findall(r"^\+\+\+ b/(\S+)", patch.read_text(), flags=re.M)


def extract(version: str, paths: list[str], dest: Path) -> Path:
    """The members of the release's tarball that ``paths`` name, under dest/Python-X.Y.Z."""
    prefix = f"Python-{version}/"
    with tarfile.open(tarball(version)) as archive:
        wanted = [m for m in archive.getmembers() if m.name.removeprefix(prefix) in paths]
        archive.extractall(dest, members=wanted, filter="data")
    return dest / f"Python-{version}"


def apply(patch: Path, root: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["patch", "-p1", "--fuzz=0", "--batch", *extra, "-i", str(patch)],
                          cwd=root, capture_output=True, text=True)


def body(text: str, signature: str) -> str:
    """The body of the C function whose definition line is ``signature`` (to its closing brace
    in column 0)."""
    start = text.index("\n" + signature + "\n")
    end = text.index("\n}\n", start)
    return text[start:end]


def fence_fixed(version: str, qsbr_c: str) -> bool:
    """The fence precedes the load of wr_seq in the release's non-advancing goal."""
    if version == "3.13.5":   # 3.13.0-3.13.5: _Py_qsbr_deferred_advance's deferring path
        goal = body(qsbr_c, "_Py_qsbr_deferred_advance(struct _qsbr_thread_state *qsbr)")
        goal = goal[:goal.index("qsbr->deferrals = 0;")]
    else:                     # 3.13.6+, 3.14: _Py_qsbr_shared_next
        goal = body(qsbr_c, "_Py_qsbr_shared_next(struct _qsbr_shared *shared)")
    load = goal.index("_Py_qsbr_shared_current(")
    return FENCE in goal[:load]


def merge_fixed(dict_c: str) -> bool:
    """In dict_dict_merge's clone path, set_keys() comes before the old keys' decref."""
    merge = body(dict_c, "dict_dict_merge(PyInterpreterState *interp, PyDictObject *mp, "
                         "PyDictObject *other, int override)")
    clone = merge[merge.index("clone_combined_dict_keys(other)"):]
    clone = clone[:clone.index("return 0;")]
    publish = clone.index("set_keys(mp, keys);")
    retire = [m.start() for m in re.finditer(r"dictkeys_decref\(", clone)]
    return len(retire) == 1 and retire[0] > publish and "mp->ma_keys" not in clone[publish:
                                                                                    retire[0]]


CHECKS = {"stale-goal-fence": ("Python/qsbr.c", fence_fixed),
          "dict-merge-order": ("Objects/dictobject.c", lambda _version, text: merge_fixed(text))}


def test_one_patch_per_finding_and_release():
    have = {p.name for p in UPSTREAM.glob("*.patch") if not p.name.startswith("test-only-")}
    assert have == {f"{name}-{v}.patch" for name in NAMES for v in RELEASES}


@pytest.mark.requires("patch")
@pytest.mark.parametrize("version", RELEASES)
@pytest.mark.parametrize("name", NAMES)
def test_patch_applies_to_its_tarball_and_fixes(name, version, tmp_path):
    patch = UPSTREAM / f"{name}-{version}.patch"
    paths = patch_paths(patch)
    news = [p for p in paths if p.startswith("Misc/NEWS.d/")]
    assert len(news) == 1 and NEWS.fullmatch(news[0]), paths
    assert "gh-issue-000000" in news[0], "a real issue number: update docs/upstream/README.md"
    target, fixed = CHECKS[name]
    root = extract(version, paths, tmp_path)
    assert sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()) == [target]
    pristine = (root / target).read_text()
    assert not fixed(version, pristine), f"{target} of {version} already has the fix"

    dry = apply(patch, root, "--dry-run")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert (root / target).read_text() == pristine, "--dry-run wrote the file"
    real = apply(patch, root)
    assert real.returncode == 0, real.stdout + real.stderr
    assert fixed(version, (root / target).read_text()), f"{patch.name}: no fix in {target}"
    entry = (root / news[0]).read_text()
    assert entry.strip() and "free threading" in entry
    again = apply(patch, root, "--dry-run", "--forward")
    assert again.returncode != 0, "the patch applies twice: it changes nothing"


def added_code(patch_text: str) -> list[list[str]]:
    """Per hunk of a patch to qsbr.c, the added lines that are code (comments left out)."""
    hunks = []
    qsbr = re.split(r"^\+\+\+ b/\S*qsbr\.c.*$", patch_text, maxsplit=1, flags=re.M)[-1]
    for hunk in re.split(r"^@@ .*$", qsbr.split("\n--- ", 1)[0], flags=re.M)[1:]:
        lines = [line[1:].strip() for line in hunk.splitlines() if line.startswith("+")]
        hunks.append([line for line in lines if line and not line.startswith("//")])
    return hunks


def test_port_fix_is_the_upstream_fence():
    port = (FIXES / "stale-goal-fence.patch").read_text()
    assert port.count("+++ b/") == 1 and "+++ b/src/qsbr.c" in port
    want = [[FENCE]]
    for version in RELEASES:
        assert added_code((UPSTREAM / f"stale-goal-fence-{version}.patch").read_text()) == want
    # Two hunks: _Py_qsbr_deferred_advance's deferring path, then _Py_qsbr_shared_next, each
    # adding the fence right before the goal's load of wr_seq, as the upstream patches do.
    assert added_code(port) == want * 2
    for hunk, function in zip(re.split(r"^@@ ", port, flags=re.M)[1:],
                              ("_Py_qsbr_deferred_advance", "_Py_qsbr_shared_next"), strict=True):
        assert function + "(" in hunk.split("\n", 1)[0], hunk
        lines = hunk.splitlines()
        fence = next(i for i, line in enumerate(lines) if line == "+    " + FENCE
                     or line == "+        " + FENCE)
        after = next(line for line in lines[fence + 1:] if not line.startswith("+"))
        assert "_Py_qsbr_shared_current(" in after, hunk


def test_news_placeholder_is_documented():
    readme = (UPSTREAM / "README.md").read_text()
    assert "gh-issue-000000" in readme and "placeholder" in readme


PROVISION = ROOT / "tools" / "provision-python"


def provision(*args: str, cache: Path) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(cache), "QSBR_PYTHON_CACHE": str(cache)}
    return subprocess.run(["bash", str(PROVISION), *args], capture_output=True, text=True,
                          env=env)


@pytest.mark.requires("patch")
def test_provision_names_a_patched_build_apart(tmp_path):
    """--patch FILE gives the build its own cache name; --print-exe says it without building."""
    fence, merge = (str(UPSTREAM / f"{n}-3.14.7.patch") for n in NAMES)
    plain = provision("--print-exe", "3.14.7", "3.13.5", cache=tmp_path)
    assert plain.returncode == 0, plain.stderr
    assert plain.stdout.split() == [f"{tmp_path}/bin/python3.14.7t",
                                    f"{tmp_path}/bin/python3.13.5t"]
    both = provision("--print-exe", "--patch", fence, f"--patch={merge}", "3.14.7", cache=tmp_path)
    assert both.returncode == 0, both.stderr
    assert both.stdout.split() == [
        f"{tmp_path}/bin/python3.14.7t+stale-goal-fence+dict-merge-order"]
    other = tmp_path / "local-tweak.patch"
    other.write_text("")
    named = provision("--print-exe", "--patch", str(other), "3.14.7", cache=tmp_path)
    assert named.stdout.split() == [f"{tmp_path}/bin/python3.14.7t+local-tweak"], named.stderr
    wrong = provision("--print-exe", "--patch", fence, "3.13.5", cache=tmp_path)
    assert wrong.returncode != 0 and not wrong.stdout
    assert "is for CPython 3.14.7, not 3.13.5" in wrong.stderr
    for bad in (["--patch"], ["--patch", str(tmp_path / "absent.patch")],
                ["--patch", fence, "--download-only", "3.14.7"]):
        result = provision(*bad, cache=tmp_path)
        assert result.returncode != 0 and "error:" in result.stderr, bad
    assert sorted(p.name for p in tmp_path.iterdir()) == ["local-tweak.patch"], "it built"
