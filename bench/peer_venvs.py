"""The peers' own virtual environments, `build/peers/<peer>/venv`, made from this
interpreter's base Python and filled from `bench/peers/requirements-<peer>.txt` (exact
pins). A stamp holding the requirements' hash spares the pip run when nothing changed; a
changed file updates the venv in place."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

from harness import log

BENCH_DIR = Path(__file__).resolve().parent
PEERS_DIR = BENCH_DIR / "peers"
BUILD_DIR = BENCH_DIR.parent / "build" / "peers"
INSTALL_TIMEOUT_S = 1800.0
"""Prefect brings about 100 packages; a cold install from PyPI takes a few minutes."""


def requirements(peer: str) -> Path:
    return PEERS_DIR / f"requirements-{peer}.txt"


def _run(argv: list[str], what: str, timeout: float) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as error:
        raise RuntimeError(f"{what}: not done after {timeout:g} s") from error
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).splitlines()[-20:])
        raise RuntimeError(f"{what} failed (exit {done.returncode}):\n{tail}")
    return done.stdout


def ensure_venv(peer: str) -> Path:
    """The `bin` folder of the peer's venv, created or updated to its pinned requirements.
    Raises RuntimeError when that fails."""
    venv = BUILD_DIR / peer / "venv"
    python = venv / "bin" / "python"
    stamp = venv / ".installed"
    pins = requirements(peer)
    digest = hashlib.sha256(pins.read_bytes()).hexdigest()
    if python.exists() and stamp.exists() and stamp.read_text().strip() == digest:
        return venv / "bin"
    if not python.exists():
        log(f"[peers] creating {venv}")
        _run([sys.executable, "-m", "venv", str(venv)], f"python -m venv {venv}", 120)
    log(f"[peers] installing {pins.name} into {venv} ...")
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    _run([*pip, "-r", str(pins)], f"pip install -r {pins}", INSTALL_TIMEOUT_S)
    stamp.write_text(digest + "\n")
    return venv / "bin"


def installed_versions(bin_dir: Path, peer: str) -> dict[str, str]:
    """The installed versions of the packages the requirements file names."""
    names = [
        line.split("==")[0].strip()
        for line in requirements(peer).read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    script = (
        "import importlib.metadata as m, json, sys; "
        "print(json.dumps({n: m.version(n) for n in sys.argv[1:]}))"
    )
    out = _run([str(bin_dir / "python"), "-c", script, *names], f"{peer} versions", 60)
    versions: dict[str, str] = json.loads(out)
    return versions
