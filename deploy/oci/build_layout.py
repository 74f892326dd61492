#!/usr/bin/env python3
"""Package pqguard.wasm as an OCI image layout on disk, in the two Wasm image formats.

    python3 deploy/oci/build_layout.py [--wasm dist/pqguard.wasm] [--out dist/oci]
                                       [--version 0.1.0] [--revision GIT_COMMIT] [--tar FILE]

No container engine, no registry and no third-party package is needed: the
layout (``oci-layout``, ``index.json``, ``blobs/sha256/…``) is written with the
Python standard library. Push it with any OCI client, for example::

    skopeo copy oci:dist/oci:0.1.0        docker://REGISTRY/pqguard:0.1.0
    skopeo copy oci:dist/oci:0.1.0-compat docker://REGISTRY/pqguard:0.1.0-compat

Two images are written, each a single-platform OCI image manifest, named in
``index.json`` by ``org.opencontainers.image.ref.name``:

``VERSION`` — the *oci* variant of the Wasm image specification
    (github.com/solo-io/wasm, spec/spec.md): the manifest config and a first
    layer are the runtime configuration (``application/vnd.module.wasm.config.v1+json``),
    the second layer is the module itself, uncompressed
    (``application/vnd.module.wasm.content.layer.v1+wasm``). Istio and Envoy
    Gateway accept this variant only with exactly these two layers. The module
    layer's digest is the SHA-256 of pqguard.wasm, so a plain Envoy can also
    fetch that blob from the registry with ``vm_config.code.remote``.

``VERSION-compat`` — the *compat* variant (spec/spec-compat.md): an ordinary
    image with one ``application/vnd.oci.image.layer.v1.tar+gzip`` layer
    holding ``plugin.wasm`` (and ``runtime-config.json``), and the manifest
    annotation ``module.wasm.image/variant: compat``. For registries and tools
    that accept only standard image media types.

Reproducible: the same module, version, revision and creation time give the
same digests (tar entries sorted, uid/gid 0, mode 0644, mtime = creation time;
gzip without name and with that mtime; JSON with sorted keys and no spaces).
The creation time is ``--created`` (RFC 3339), else ``$SOURCE_DATE_EPOCH``,
else 1970-01-01T00:00:00Z. The gzip stream comes from zlib: a different zlib
version could compress differently (the *oci* variant has no compressed blob).
"""

from __future__ import annotations

import argparse
import datetime
import gzip
import hashlib
import io
import json
import os
import shutil
import sys
import tarfile
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]

# Media types.
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_IMAGE_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_TAR_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
WASM_CONFIG = "application/vnd.module.wasm.config.v1+json"
WASM_CONTENT_LAYER = "application/vnd.module.wasm.content.layer.v1+wasm"

# Annotations.
REF_NAME = "org.opencontainers.image.ref.name"
TITLE = "org.opencontainers.image.title"
COMPAT_VARIANT = "module.wasm.image/variant"

COMPAT_SUFFIX = "-compat"
ROOT_ID = "pqguard"
# The proxy-wasm ABI the module exports (``proxy_abi_version_0_2_1``).
ABI_VERSIONS = ["v0.2.1"]

SOURCE_URL = "https://github.com/pqguard/pqguard"
DESCRIPTION = "pqguard: post-quantum security filter for MCP traffic (proxy-wasm module for Envoy)"


def canonical_json(value: Any) -> bytes:
    """The one serialisation used for every JSON blob: sorted keys, no insignificant spaces."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def workspace_version() -> str:
    """``[workspace.package] version`` of Cargo.toml."""
    with open(REPO_ROOT / "Cargo.toml", "rb") as f:
        return tomllib.load(f)["workspace"]["package"]["version"]


def creation_time(created: str | None) -> datetime.datetime:
    """``created`` (RFC 3339), else ``$SOURCE_DATE_EPOCH``, else the Unix epoch; always UTC, whole seconds."""
    if created:
        moment = datetime.datetime.fromisoformat(created.replace("Z", "+00:00"))
        if moment.tzinfo is None:
            raise ValueError(f"--created needs a time zone: {created!r}")
    else:
        moment = datetime.datetime.fromtimestamp(int(os.environ.get("SOURCE_DATE_EPOCH", "0")), datetime.timezone.utc)
    return moment.astimezone(datetime.timezone.utc).replace(microsecond=0)


def rfc3339(moment: datetime.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Blob:
    media_type: str
    data: bytes
    annotations: tuple[tuple[str, str], ...] = ()

    @property
    def digest(self) -> str:
        return sha256_digest(self.data)

    def descriptor(self, **extra_annotations: str) -> dict[str, Any]:
        annotations = dict(self.annotations) | extra_annotations
        descriptor: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest, "size": len(self.data)}
        if annotations:
            descriptor["annotations"] = annotations
        return descriptor


def deterministic_tar(files: dict[str, bytes], mtime: int) -> bytes:
    """A ustar archive of regular files at its root: sorted names, uid/gid 0, no owner names, mode 0644."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name in sorted(files):
            info = tarfile.TarInfo(name)
            info.size = len(files[name])
            info.mtime = mtime
            info.mode = 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.type = tarfile.REGTYPE
            tar.addfile(info, io.BytesIO(files[name]))
    return buffer.getvalue()


def deterministic_gzip(data: bytes, mtime: int) -> bytes:
    buffer = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buffer, compresslevel=9, mtime=mtime) as gz:
        gz.write(data)
    return buffer.getvalue()


@dataclass(frozen=True)
class Image:
    """One image: its manifest blob, and every blob the manifest refers to."""

    ref_name: str
    manifest: Blob
    blobs: tuple[Blob, ...]


def runtime_config() -> bytes:
    """The Wasm image runtime configuration (spec.md, "Envoy WASM Filter Specification")."""
    return canonical_json({"type": "envoy_proxy", "abiVersions": ABI_VERSIONS, "config": {"root_ids": [ROOT_ID]}})


def image_annotations(version: str, created: str, revision: str | None) -> dict[str, str]:
    annotations = {
        "org.opencontainers.image.title": "pqguard",
        "org.opencontainers.image.description": DESCRIPTION,
        "org.opencontainers.image.version": version,
        "org.opencontainers.image.created": created,
        "org.opencontainers.image.licenses": "Apache-2.0",
        "org.opencontainers.image.source": SOURCE_URL,
    }
    if revision:
        annotations["org.opencontainers.image.revision"] = revision
    return annotations


def oci_variant(wasm: bytes, version: str, created: str, revision: str | None) -> Image:
    config = Blob(WASM_CONFIG, runtime_config(), ((TITLE, "runtime-config.json"),))
    module = Blob(WASM_CONTENT_LAYER, wasm, ((TITLE, "plugin.wasm"),))
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config.descriptor(),
        # Istio and Envoy Gateway look for the module among exactly two layers;
        # the runtime configuration is the other one (as wasme and oras-built images have it).
        "layers": [config.descriptor(), module.descriptor()],
        "annotations": image_annotations(version, created, revision),
    }
    return Image(version, Blob(OCI_MANIFEST, canonical_json(manifest)), (config, module))


def compat_variant(wasm: bytes, version: str, created: datetime.datetime, revision: str | None) -> Image:
    mtime = int(created.timestamp())
    layer_tar = deterministic_tar({"plugin.wasm": wasm, "runtime-config.json": runtime_config()}, mtime)
    layer = Blob(OCI_LAYER_TAR_GZIP, deterministic_gzip(layer_tar, mtime))
    config = Blob(OCI_IMAGE_CONFIG, canonical_json({
        "created": rfc3339(created),
        # GOOS/GOARCH-style platform of a WASI preview 1 module.
        "architecture": "wasm",
        "os": "wasip1",
        "config": {"Labels": {"org.opencontainers.image.version": version}},
        "rootfs": {"type": "layers", "diff_ids": [sha256_digest(layer_tar)]},
        "history": [{"created": rfc3339(created), "created_by": "deploy/oci/build_layout.py"}],
    }))
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config.descriptor(),
        "layers": [layer.descriptor()],
        "annotations": image_annotations(version, rfc3339(created), revision) | {COMPAT_VARIANT: "compat"},
    }
    return Image(version + COMPAT_SUFFIX, Blob(OCI_MANIFEST, canonical_json(manifest)), (config, layer))


def build_images(wasm: bytes, version: str, created: datetime.datetime, revision: str | None) -> list[Image]:
    if not wasm.startswith(b"\0asm"):
        raise ValueError("not a WebAssembly module (no \\0asm magic)")
    return [oci_variant(wasm, version, rfc3339(created), revision), compat_variant(wasm, version, created, revision)]


def write_layout(images: list[Image], out: Path) -> dict[str, Any]:
    """Write the layout into ``out`` (replaced as a whole); return index.json."""
    index = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [image.manifest.descriptor(**{REF_NAME: image.ref_name}) for image in images],
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=out.name + ".", dir=out.parent))
    try:
        blobs = staging / "blobs" / "sha256"
        blobs.mkdir(parents=True)
        for image in images:
            for blob in (image.manifest, *image.blobs):
                (blobs / blob.digest.removeprefix("sha256:")).write_bytes(blob.data)
        (staging / "oci-layout").write_bytes(canonical_json({"imageLayoutVersion": "1.0.0"}))
        (staging / "index.json").write_bytes(canonical_json(index))
        for path in staging.rglob("*"):
            path.chmod(0o755 if path.is_dir() else 0o644)
        staging.chmod(0o755)
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return index


def tar_layout(layout: Path, tar_path: Path, mtime: int) -> None:
    """The layout as one reproducible tar file (its root holds oci-layout, index.json, blobs/)."""
    files = {str(p.relative_to(layout)): p.read_bytes() for p in layout.rglob("*") if p.is_file()}
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        directories = sorted({str(Path(name).parent) for name in files} - {"."} | {"blobs"})
        for name in sorted(directories + list(files)):
            info = tarfile.TarInfo(name)
            info.mtime, info.uid, info.gid, info.uname, info.gname = mtime, 0, 0, "", ""
            if name in files:
                info.size, info.mode, info.type = len(files[name]), 0o644, tarfile.REGTYPE
                tar.addfile(info, io.BytesIO(files[name]))
            else:
                info.mode, info.type = 0o755, tarfile.DIRTYPE
                tar.addfile(info)
    tar_path.parent.mkdir(parents=True, exist_ok=True)
    tar_path.write_bytes(buffer.getvalue())


def verify_layout(layout: Path) -> list[str]:
    """Problems found in an OCI layout: missing blobs, sizes or digests that do not match (empty: none)."""
    problems = []

    def check(descriptor: dict[str, Any]) -> bytes | None:
        algorithm, _, encoded = descriptor["digest"].partition(":")
        path = layout / "blobs" / algorithm / encoded
        if not path.is_file():
            problems.append(f"missing blob {descriptor['digest']}")
            return None
        data = path.read_bytes()
        if len(data) != descriptor["size"]:
            problems.append(f"blob {descriptor['digest']}: size {len(data)}, descriptor says {descriptor['size']}")
        if sha256_digest(data) != descriptor["digest"]:
            problems.append(f"blob {descriptor['digest']}: content digest is {sha256_digest(data)}")
        return data

    if json.loads((layout / "oci-layout").read_text()) != {"imageLayoutVersion": "1.0.0"}:
        problems.append("oci-layout is not imageLayoutVersion 1.0.0")
    for entry in json.loads((layout / "index.json").read_text())["manifests"]:
        data = check(entry)
        if data is None:
            continue
        manifest = json.loads(data)
        if manifest.get("mediaType") != entry["mediaType"]:
            problems.append(f"manifest {entry['digest']}: mediaType {manifest.get('mediaType')!r} differs from the index")
        for descriptor in [manifest["config"], *manifest["layers"]]:
            check(descriptor)
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--wasm", type=Path, default=REPO_ROOT / "dist" / "pqguard.wasm", help="the module (default: dist/pqguard.wasm)")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "dist" / "oci", help="layout directory, replaced (default: dist/oci)")
    parser.add_argument("--version", default=None, help="image version and tag (default: the workspace version in Cargo.toml)")
    parser.add_argument("--revision", default=None, help="source revision annotation (for example the git commit)")
    parser.add_argument("--created", default=None, help="creation time, RFC 3339 (default: $SOURCE_DATE_EPOCH, else the epoch)")
    parser.add_argument("--tar", type=Path, default=None, help="also write the layout as one reproducible tar file")
    args = parser.parse_args(argv)

    version = args.version or workspace_version()
    created = creation_time(args.created)
    images = build_images(args.wasm.read_bytes(), version, created, args.revision)
    index = write_layout(images, args.out)
    problems = verify_layout(args.out)
    if problems:
        print("\n".join(problems), file=sys.stderr)
        return 1
    if args.tar:
        tar_layout(args.out, args.tar, int(created.timestamp()))
    print(f"OCI layout {args.out}")
    for image, entry in zip(images, index["manifests"]):
        variant = "compat (tar+gzip layer with plugin.wasm)" if image.ref_name.endswith(COMPAT_SUFFIX) else \
            "oci (application/vnd.module.wasm.content.layer.v1+wasm)"
        print(f"  {image.ref_name:<16} {entry['digest']}  {variant}")
    print(f"  module layer     {sha256_digest(args.wasm.read_bytes())}  (= sha256 of {args.wasm.name})")
    if args.tar:
        print(f"  tar              {args.tar}  {sha256_digest(args.tar.read_bytes())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
