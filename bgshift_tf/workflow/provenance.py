"""Where a result came from: the code's commit (and whether the checkout had uncommitted changes) and the
machine (CPU model, core count, platform, and the vector/matrix extensions that decide its speed: the same
model name "AMD EPYC" covers a Zen 3 with AVX2 only and a Zen 4 with AVX512-BF16, 1.4-1.8x apart in bf16). The experiments summary and the study's part files record them.
"""

import os
import platform
import subprocess

from bgshift_tf.core import precision

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


# The /proc/cpuinfo flags that tell this project's machines apart (AVX2 only / AVX-512 with BF16 / AMX).
ISA_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")


def isa(flags=None) -> list:
    """The `ISA_FLAGS` this CPU has (of `flags`, default /proc/cpuinfo's), in `ISA_FLAGS` order."""
    flags = precision.cpu_flags() if flags is None else flags
    return [flag for flag in ISA_FLAGS if flag in flags]


def cpu_text(machine_entry) -> str:
    """A machine entry's CPU for documents: "AMD EPYC (avx2, avx512f, avx512_bf16)"; entries written before
    the ISA was recorded say so."""
    machine_entry = machine_entry or {}
    extensions = machine_entry.get("isa")
    where = ", ".join(extensions) if extensions else ("none of " + "/".join(ISA_FLAGS) if extensions == []
                                                      else "ISA not recorded")
    return f"{machine_entry.get('cpu') or 'CPU not recorded'} ({where})"


def machine() -> dict:
    """{"platform", "cpu", "cpus", "isa"} of this machine."""
    return {"platform": platform.platform(), "cpu": cpu_model(), "cpus": os.cpu_count(), "isa": isa()}


def this_cpu() -> str:
    """This machine's CPU for documents (`cpu_text` of `machine()`)."""
    return cpu_text(machine())


def code() -> dict:
    """{"commit", "dirty"} of the package's checkout."""
    return {"commit": commit(), "dirty": tree_dirty()}
