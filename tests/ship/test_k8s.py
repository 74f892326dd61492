"""The Kubernetes examples under deploy/k8s/, checked without a cluster.

* Every resource is well-formed YAML with apiVersion, kind and metadata.name.
  (Validation against the products' CRD schemas is not part of this suite:
  the schemas are the products' own files and are not vendored here.)
* The Envoy configuration inside them (EnvoyFilter and EnvoyPatchPolicy values)
  is assembled into an edge configuration and checked by Envoy 1.40 itself
  (``envoy --mode validate``), with pqguard.wasm loaded from a local file.
* They agree with the tested edge configuration (envoy/edge.yaml) and name the
  workspace version's image.

What this cannot show: that Istio or Envoy Gateway accept them, generate the
expected xDS, or pull the image. No cluster runs here.
"""

from __future__ import annotations

import copy
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from harness import REPO_ROOT, envoy_binary, free_ports, make_test_pki, render_edge, render_pqguard_filter
from harness.example import EXAMPLE_VALUES

K8S = REPO_ROOT / "deploy" / "k8s"
MANIFESTS = sorted(p for p in K8S.rglob("*.yaml") if p.name != "istiod-values.yaml")


def documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def all_resources() -> list[tuple[str, dict[str, Any]]]:
    return [(f"{path.relative_to(K8S)}#{i}", doc) for path in MANIFESTS for i, doc in enumerate(documents(path))]


def by_kind(kind: str, name: str | None = None) -> dict[str, Any]:
    found = [doc for _, doc in all_resources() if doc["kind"] == kind and (name is None or doc["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def test_every_example_file_is_found() -> None:
    names = {str(p.relative_to(K8S)) for p in MANIFESTS}
    assert {"istio/pqguard-envoyfilter.yaml", "istio/pqguard-wasmplugin.yaml", "istio/pq-tls.yaml",
            "envoy-gateway/gateway.yaml", "envoy-gateway/pqguard.yaml"} <= names


def test_istiod_values_set_only_the_curves() -> None:
    values = yaml.safe_load((K8S / "istio" / "istiod-values.yaml").read_text())
    assert values == {"meshConfig": {"tlsDefaults": {"ecdhCurves": ["X25519MLKEM768"]}}}


# -- what the examples say about pqguard agrees with the tested configuration ----------------------


def edge_set_filter_state() -> dict[str, Any]:
    edge = yaml.safe_load(render_edge(EXAMPLE_VALUES, render_pqguard_filter("/x/pqguard.wasm", {})))
    hcm = edge["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    return next(f for f in hcm["http_filters"] if f["name"] == "envoy.filters.http.set_filter_state")


def istio_patches() -> list[dict[str, Any]]:
    return by_kind("EnvoyFilter", "pqguard")["spec"]["configPatches"]


def eg_patches() -> list[dict[str, Any]]:
    return by_kind("EnvoyPatchPolicy", "pqguard")["spec"]["jsonPatches"]


def test_set_filter_state_is_the_tested_one() -> None:
    tested = edge_set_filter_state()
    assert istio_patches()[1]["patch"]["value"] == tested
    assert eg_patches()[0]["operation"]["value"] == tested


def test_filter_order_and_fail_closed() -> None:
    patches = istio_patches()
    assert [p["applyTo"] for p in patches] == ["EXTENSION_CONFIG", "HTTP_FILTER", "HTTP_FILTER"]
    assert patches[1]["patch"]["operation"] == "INSERT_FIRST"
    assert patches[2]["patch"]["operation"] == "INSERT_BEFORE"
    assert patches[2]["match"]["listener"]["filterChain"]["filter"]["subFilter"]["name"] == "envoy.filters.http.router"
    extension = patches[0]["patch"]["value"]
    assert patches[2]["patch"]["value"]["name"] == extension["name"]
    config = extension["typed_config"]["config"]
    assert config["allow_on_headers_stop_iteration"] is True and config["failure_policy"] == "FAIL_RELOAD"
    assert by_kind("WasmPlugin")["spec"]["failStrategy"] == "FAIL_CLOSE"
    (wasm,) = by_kind("EnvoyExtensionPolicy")["spec"]["wasm"]
    assert wasm["failOpen"] is False
    assert eg_patches()[0]["operation"]["path"] == "/http_filters/0"
    assert eg_patches()[1]["operation"]["path"] == "/allow_on_headers_stop_iteration"
    assert eg_patches()[1]["operation"]["value"] is True
    policy = by_kind("EnvoyExtensionPolicy")["metadata"]
    assert f"/envoyextensionpolicy/{policy['namespace']}/{policy['name']}/wasm/0'" in eg_patches()[1]["operation"]["jsonPath"]


def test_images_are_the_workspace_version(oci_builder: Any) -> None:
    version = oci_builder.workspace_version()
    (wasm,) = by_kind("EnvoyExtensionPolicy")["spec"]["wasm"]
    assert wasm["code"]["image"]["url"] == f"ghcr.io/pqguard/pqguard:{version}"
    assert by_kind("WasmPlugin")["spec"]["url"] == f"oci://ghcr.io/pqguard/pqguard:{version}"
    remote = istio_patches()[0]["patch"]["value"]["typed_config"]["config"]["vm_config"]["code"]["remote"]
    assert remote["http_uri"]["uri"] == f"oci://ghcr.io/pqguard/pqguard:{version}"


def test_hybrid_pq_tls_settings() -> None:
    istio_gateway = by_kind("Gateway", "mcp")
    assert istio_gateway["spec"]["servers"][0]["tls"]["ecdhCurves"] == ["X25519MLKEM768", "X25519"]
    assert by_kind("ClientTrafficPolicy")["spec"]["tls"]["ecdhCurves"] == ["X25519MLKEM768", "X25519"]
    backend = by_kind("EnvoyProxy")["spec"]["backendTLS"]
    assert backend == {"minVersion": "1.3", "maxVersion": "1.3", "ecdhCurves": ["X25519MLKEM768"]}


# -- the Envoy configuration inside the examples, checked by Envoy ----------------------------------


def edge_with_filters(http_filters: list[dict[str, Any]], pki_dir: Path) -> dict[str, Any]:
    """The tested edge configuration (envoy/edge.yaml) with its HTTP filters replaced by ``http_filters``."""
    pki = make_test_pki(pki_dir)
    admin, listen, upstream = free_ports(3)
    edge = yaml.safe_load(render_edge({
        "ADMIN_PORT": admin, "LISTEN_PORT": listen, "CERT_CHAIN": pki.edge_cert, "PRIVATE_KEY": pki.edge_key,
        "UPSTREAM_PORT": upstream, "UPSTREAM_SNI": pki.server_name, "CA_CERT": pki.ca_cert,
    }, None))
    hcm = edge["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    router = hcm["http_filters"][-1]
    assert router["name"] == "envoy.filters.http.router"
    hcm["http_filters"] = [*http_filters, router]
    return edge


def envoy_validate(config: dict[str, Any], path: Path) -> None:
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    result = subprocess.run([str(envoy_binary()), "--mode", "validate", "-c", str(path), "--log-level", "warn"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"envoy --mode validate {path}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"


def test_istio_envoyfilter_values_are_a_valid_envoy_1_40_configuration(wasm: Path, tmp_path: Path) -> None:
    patches = istio_patches()
    extension = copy.deepcopy(patches[0]["patch"]["value"])
    # What the Istio agent does before Envoy sees it: the oci:// module becomes a local file.
    extension["typed_config"]["config"]["vm_config"]["code"] = {"local": {"filename": str(wasm)}}
    filters = [patches[1]["patch"]["value"], {"name": extension["name"], "typed_config": extension["typed_config"]}]
    envoy_validate(edge_with_filters(filters, tmp_path / "pki"), tmp_path / "istio-edge.yaml")


def test_envoy_gateway_patched_filter_is_a_valid_envoy_1_40_configuration(wasm: Path, tmp_path: Path) -> None:
    """The wasm filter as Envoy Gateway generates it (internal/xds/translator/wasm.go), patched as pqguard.yaml says."""
    patches = eg_patches()
    (spec,) = by_kind("EnvoyExtensionPolicy")["spec"]["wasm"]
    wasm_filter = {
        "name": "envoy.filters.http.wasm/envoyextensionpolicy/mcp/pqguard/wasm/0",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": {
                "name": spec["name"], "root_id": spec["rootID"], "fail_open": spec["failOpen"],
                "vm_config": {"vm_id": "pqguard", "runtime": "envoy.wasm.runtime.v8",
                              "code": {"local": {"filename": str(wasm)}}},
                "configuration": {"@type": "type.googleapis.com/google.protobuf.StringValue",
                                  "value": json.dumps(spec["config"])},
            },
        },
    }
    # Patch 2: the field the JSON pointer adds, at the place the JSONPath selects.
    wasm_filter["typed_config"]["config"][patches[1]["operation"]["path"].lstrip("/")] = patches[1]["operation"]["value"]
    # Patch 1: set_filter_state at index 0 of http_filters.
    filters = [patches[0]["operation"]["value"], wasm_filter]
    envoy_validate(edge_with_filters(filters, tmp_path / "pki"), tmp_path / "eg-edge.yaml")


@pytest.mark.parametrize(("where", "resource"), all_resources())
def test_resource_is_well_formed(where: str, resource: dict[str, Any]) -> None:
    assert isinstance(resource.get("apiVersion"), str) and "/" in resource["apiVersion"], where
    assert isinstance(resource.get("kind"), str) and resource["kind"], where
    assert resource.get("metadata", {}).get("name"), where
