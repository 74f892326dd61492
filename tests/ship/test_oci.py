"""The OCI image of pqguard: built on disk, pushed to a real registry, pulled back, loaded by Envoy from it.

* deploy/oci/build_layout.py writes the layout (the same code as ``just oci``);
* Debian's docker-registry (CNCF Distribution) serves on 127.0.0.1:<free port>;
* skopeo pushes both variants and pulls them back into a new layout;
* an edge Envoy fetches the module from the registry's blob URL
  (``vm_config.code.remote`` with ``sha256``) and serves MCP traffic with it.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import tarfile
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import httpx
import pytest
from harness import wait_for_records
from harness.mcp_session import run_scripted_session
from harness.registry import (
    OCI_LAYER_TAR_GZIP,
    WASM_CONTENT_LAYER,
    Registry,
    layout_images,
    sha256_hex,
    skopeo,
)
from harness.remote_wasm import RemoteCode, RemoteCodeTopology

REPOSITORY = "pqguard"
WASM_CONFIG = "application/vnd.module.wasm.config.v1+json"
PQ = "X25519MLKEM768"


@pytest.fixture(scope="module")
def version(oci_builder: ModuleType) -> str:
    return oci_builder.workspace_version()


@pytest.fixture(scope="module")
def layout(oci_builder: ModuleType, wasm: Path, ship_run_dir: Path) -> Path:
    out = ship_run_dir / "oci"
    assert oci_builder.main(["--wasm", str(wasm), "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def registry(ship_run_dir: Path) -> Iterator[Registry]:
    server = Registry(ship_run_dir)
    server.start()
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def pushed(layout: Path, registry: Registry, version: str) -> dict[str, str]:
    """Both variants pushed with skopeo; ``{tag: manifest digest in the layout}``."""
    tags = {}
    for tag, image in layout_images(layout).items():
        skopeo("copy", "--dest-tls-verify=false", f"oci:{layout}:{tag}", f"docker://{registry.host}/{REPOSITORY}:{tag}")
        tags[tag] = image.digest
    assert set(tags) == {version, f"{version}-compat"}
    return tags


# -- the layout -----------------------------------------------------------------------------------


def test_same_inputs_give_the_same_digests(oci_builder: ModuleType, wasm: Path, tmp_path: Path) -> None:
    # The module copied with another modification time and under another name: only its bytes count.
    copy = tmp_path / "elsewhere.wasm"
    shutil.copyfile(wasm, copy)
    os.utime(copy, (1_000_000_000, 1_000_000_000))
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    assert oci_builder.main(["--wasm", str(wasm), "--out", str(a), "--version", "9.9.9", "--tar", str(tmp_path / "a.tar")]) == 0
    assert oci_builder.main(["--wasm", str(copy), "--out", str(b), "--version", "9.9.9", "--tar", str(tmp_path / "b.tar")]) == 0
    assert (a / "index.json").read_bytes() == (b / "index.json").read_bytes()
    blobs_a = {p.name: p.read_bytes() for p in (a / "blobs" / "sha256").iterdir()}
    blobs_b = {p.name: p.read_bytes() for p in (b / "blobs" / "sha256").iterdir()}
    assert blobs_a == blobs_b
    assert (tmp_path / "a.tar").read_bytes() == (tmp_path / "b.tar").read_bytes()
    # A different creation time is a different input: every manifest changes.
    assert oci_builder.main(["--wasm", str(wasm), "--out", str(c), "--version", "9.9.9",
                             "--created", "2026-01-02T03:04:05Z"]) == 0
    digests = {ref: image.digest for ref, image in layout_images(a).items()}
    other = {ref: image.digest for ref, image in layout_images(c).items()}
    assert digests.keys() == other.keys() and all(digests[k] != other[k] for k in digests)


def test_layout_is_complete(oci_builder: ModuleType, layout: Path) -> None:
    assert oci_builder.verify_layout(layout) == []
    assert json.loads((layout / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    index = json.loads((layout / "index.json").read_text())
    assert index["mediaType"] == "application/vnd.oci.image.index.v1+json"


def test_oci_variant_is_the_wasm_artifact_format(layout: Path, wasm: Path, version: str) -> None:
    """spec.md of the Wasm image specification, as Istio and Envoy Gateway read it (exactly two layers)."""
    image = layout_images(layout)[version]
    manifest = image.manifest
    assert manifest["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert manifest["config"]["mediaType"] == WASM_CONFIG
    assert [layer["mediaType"] for layer in manifest["layers"]] == [WASM_CONFIG, WASM_CONTENT_LAYER]
    module = manifest["layers"][1]
    assert module["digest"] == "sha256:" + sha256_hex(wasm.read_bytes())
    assert module["size"] == wasm.stat().st_size
    assert image.wasm() == wasm.read_bytes()
    runtime_config = json.loads(image.blob(manifest["config"]["digest"]))
    assert runtime_config == {"type": "envoy_proxy", "abiVersions": ["v0.2.1"], "config": {"root_ids": ["pqguard"]}}
    assert manifest["annotations"]["org.opencontainers.image.version"] == version


def test_compat_variant_is_a_single_layer_image_with_plugin_wasm(layout: Path, wasm: Path, version: str) -> None:
    """spec-compat.md: one tar+gzip layer holding plugin.wasm, annotation module.wasm.image/variant=compat."""
    image = layout_images(layout)[f"{version}-compat"]
    manifest = image.manifest
    assert manifest["annotations"]["module.wasm.image/variant"] == "compat"
    assert manifest["config"]["mediaType"] == "application/vnd.oci.image.config.v1+json"
    assert [layer["mediaType"] for layer in manifest["layers"]] == [OCI_LAYER_TAR_GZIP]
    compressed = image.blob(manifest["layers"][0]["digest"])
    assert compressed[4:8] == b"\0\0\0\0", "gzip header carries no modification time"
    layer_tar = gzip.decompress(compressed)
    with tarfile.open(fileobj=io.BytesIO(layer_tar)) as tar:
        members = tar.getmembers()
        assert [m.name for m in members] == ["plugin.wasm", "runtime-config.json"]
        assert all((m.uid, m.gid, m.uname, m.gname, m.mtime, m.mode) == (0, 0, "", "", 0, 0o644) for m in members)
        member = tar.extractfile("plugin.wasm")
        assert member is not None and member.read() == wasm.read_bytes()
    config = json.loads(image.blob(manifest["config"]["digest"]))
    assert config["rootfs"] == {"type": "layers", "diff_ids": ["sha256:" + sha256_hex(layer_tar)]}
    assert (config["os"], config["architecture"]) == ("wasip1", "wasm")


# -- through a registry ---------------------------------------------------------------------------


@pytest.mark.parametrize("variant", ["oci", "compat"])
def test_push_and_pull_keep_every_digest(
    variant: str, pushed: dict[str, str], registry: Registry, wasm: Path, version: str, tmp_path: Path
) -> None:
    tag = version if variant == "oci" else f"{version}-compat"
    remote_digest, raw = registry.manifest(REPOSITORY, tag)
    assert remote_digest == pushed[tag]
    assert "sha256:" + sha256_hex(raw) == pushed[tag]
    # skopeo's own view (``inspect`` without ``--raw`` reads image configs only, not artifacts).
    raw_by_skopeo = skopeo("inspect", "--raw", "--tls-verify=false", f"docker://{registry.host}/{REPOSITORY}:{tag}")
    assert "sha256:" + sha256_hex(raw_by_skopeo.encode()) == pushed[tag]

    pulled = tmp_path / "pulled"
    skopeo("copy", "--src-tls-verify=false", f"docker://{registry.host}/{REPOSITORY}:{tag}", f"oci:{pulled}:{tag}")
    image = layout_images(pulled)[tag]
    assert image.digest == pushed[tag]
    assert sha256_hex(image.wasm()) == sha256_hex(wasm.read_bytes())


def test_envoy_loads_pqguard_from_the_registry_and_serves_mcp(
    pushed: dict[str, str], registry: Registry, wasm: Path, version: str, tmp_path: Path, run_dir: Path
) -> None:
    # The module as pulled back from the registry: the edge's configuration refers only to the registry.
    pulled = tmp_path / "pulled"
    skopeo("copy", "--src-tls-verify=false", f"docker://{registry.host}/{REPOSITORY}:{version}", f"oci:{pulled}:{version}")
    module_layer = layout_images(pulled)[version].manifest["layers"][1]
    assert module_layer["mediaType"] == WASM_CONTENT_LAYER
    digest = module_layer["digest"]
    local_copy = tmp_path / "pulled.wasm"
    local_copy.write_bytes(layout_images(pulled)[version].wasm())

    code = RemoteCode(url=registry.blob_url(REPOSITORY, digest), sha256=digest.removeprefix("sha256:"))
    fetches_before = len(registry.blob_requests())
    topology = RemoteCodeTopology(code, wasm=local_copy, run_dir=run_dir)
    with topology:
        edge_config = topology.edge.config_path.read_text()
        assert "local:" not in edge_config.split("vm_config:", 1)[1].split("configuration:", 1)[0]
        assert f"uri: {code.url}" in edge_config and f"sha256: {code.sha256}" in edge_config
        fetches = registry.blob_requests()[fetches_before:]
        assert any(digest in line and " 200 " in line for line in fetches), fetches
        starts = topology.pqguard_start_records()
        assert starts, f"no pqguard.start record:\n{topology.edge.log_tail()}"
        assert {record.get("version") for record in starts} == {version}

        since = topology.edge_log_mark()
        summary = run_scripted_session(topology.pq_url, full=False, echo_text="from the registry")
        assert summary.echo_text == "from the registry"
        records = wait_for_records(topology.edge_log, lambda rs: {"initialize", "tools/call"} <= {r.get("method") for r in rs},
                                   since=since)
        assert {r.get("tls_group") for r in records} == {PQ}
        assert all(r.get("outcome") == "forwarded" for r in records)

        # The filter from the registry refuses what it must: a body that is not JSON never reaches the server.
        received = len(topology.mcp_received())
        response = httpx.post(topology.pq_url, content=b"{not json", trust_env=False, timeout=10,
                               headers={"content-type": "application/json", "accept": "application/json, text/event-stream"})
        assert response.status_code == 400, response.text
        assert response.json()["error"]["code"] == -32700
        assert len(topology.mcp_received()) == received


def test_envoy_refuses_a_module_whose_sha256_differs(
    pushed: dict[str, str], registry: Registry, wasm: Path, version: str, run_dir: Path
) -> None:
    """Fetched bytes that do not match ``sha256`` are never run; the filter fails closed (503, nothing forwarded)."""
    digest = module_layer_digest(registry, version)
    wrong = ("0" if digest[0] != "0" else "1") + digest[1:]
    code = RemoteCode(url=registry.blob_url(REPOSITORY, "sha256:" + digest), sha256=wrong)
    with RemoteCodeTopology(code, wasm=wasm, run_dir=run_dir) as topology:
        log = topology.edge.log_path.read_text()
        assert "Plugin configured to fail closed failed to load" in log, topology.edge.log_tail()
        assert topology.pqguard_start_records() == []
        received = len(topology.mcp_received())
        response = httpx.post(topology.pq_url, content=json.dumps({"jsonrpc": "2.0", "id": 1, "method": "ping"}),
                              trust_env=False, timeout=10,
                              headers={"content-type": "application/json", "accept": "application/json, text/event-stream"})
        assert response.status_code == 503, response.text
        assert len(topology.mcp_received()) == received


def module_layer_digest(registry: Registry, tag: str) -> str:
    """The module layer digest (hex) of the *oci* variant, read from the registry."""
    _, raw = registry.manifest(REPOSITORY, tag)
    layer = json.loads(raw)["layers"][1]
    assert layer["mediaType"] == WASM_CONTENT_LAYER
    return layer["digest"].removeprefix("sha256:")
