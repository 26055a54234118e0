"""Where a result came from: the code's commit (and whether the checkout had uncommitted changes) and the
machine (CPU model, core count, platform). The experiments summary and the study's part files record them.
"""

import os
import platform
import subprocess

_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _git(*args):
    """stdout of `git <args>` in the package's checkout, or None outside a git checkout."""
    try:
        return subprocess.run(["git", *args], cwd=_PACKAGE_DIR, capture_output=True, text=True,
                              check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None


def commit() -> str:
    """The git commit of the package's checkout ("unknown" outside a git checkout)."""
    out = _git("rev-parse", "HEAD")
    return out.strip() if out else "unknown"


RESULT_DOCS = "docs/"  # results documents the jobs themselves write (docs/RESULTS.md, docs/study/): not code


def tree_dirty():
    """True when tracked files of the checkout outside `docs/` differ from the commit (`git status
    --porcelain --untracked-files=no`), None outside a git checkout. Untracked files (run outputs) and
    docs/ do not count: `make study` rewrites docs/RESULTS.md after each part, which marked every later
    part of a run from a clean checkout as dirty."""
    out = _git("status", "--porcelain", "--untracked-files=no")
    if out is None:
        return None
    paths = [line[3:].split(" -> ")[-1].strip('"') for line in out.splitlines() if line.strip()]
    return any(not path.startswith(RESULT_DOCS) for path in paths)


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else `platform.processor()`."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine() -> dict:
    """{"platform", "cpu", "cpus"} of this machine."""
    return {"platform": platform.platform(), "cpu": cpu_model(), "cpus": os.cpu_count()}


def code() -> dict:
    """{"commit", "dirty"} of the package's checkout."""
    return {"commit": commit(), "dirty": tree_dirty()}
