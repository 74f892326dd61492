"""`pqguard audit report --html`: one self-contained page, opened in headless Chromium (Debian
package) as a person would, screenshotted, and checked for its charts: the classical straggler
first, bars in the colours of post-quantum and classical cryptography, the timeline. The log comes
from the independent Python chain writer of test_audit_cli.py, with a caller whose `sub` is HTML."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from test_audit_cli import ENVOY, PyChain, cli  # noqa: F401  (cli is a fixture)

PQ, CLASSICAL = (0x2E, 0x7D, 0x32), (0xC6, 0x28, 0x28)
HOSTILE = "<img src=x onerror=alert(1)>"


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.fail("chromium not found: install Debian's chromium package (just setup does, as root)", pytrace=False)
    return found


def headless(*args: str, profile: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                           "--disable-background-networking", "--disable-component-update", "--disable-sync",
                           f"--user-data-dir={profile}", *args], capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory, cli: Path) -> tuple[Path, str]:  # noqa: F811
    work = tmp_path_factory.mktemp("report")
    c = PyChain("1790000000000-9", bytes([4]) * 32, "audit-1", every=3, t0=1_790_000_000_000)
    for i in range(1, 25):
        t = 1_790_000_000_000 + i * 20_000  # spread over several minutes
        if i % 3 == 0:
            c.decision(t, sub="bob", group="X25519", kex_class="classical", token_alg="EdDSA", tool="echo")
        elif i % 7 == 0:
            c.decision(t, sub=HOSTILE, group="X25519MLKEM768", kex_class="hybrid-pq", token_alg="ML-DSA-65", tool="echo")
        else:
            c.decision(t, sub="alice", group="X25519MLKEM768", kex_class="hybrid-pq", token_alg="ML-DSA-65", tool="echo")
    log = work / "envoy.log"
    log.write_text("\n".join(ENVOY + line for line in c.lines) + "\n", encoding="utf-8")
    html = work / "inventory.html"
    done = subprocess.run([str(cli), "audit", "report", "--html", str(html), str(log)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return html, html.read_text()


def test_the_page_is_self_contained_and_escapes_names_from_the_log(page: tuple[Path, str]) -> None:
    _, text = page
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", text), "the page fetches something"
    assert "<script" not in text and "<img" not in text
    assert "&lt;img src=x onerror=alert(1)&gt;" in text
    callers = re.findall(r'<tr class="(straggler|ok)"><td>([^<]*)</td>', text)
    assert callers[0] == ("straggler", "https://issuer.example|bob"), callers
    assert {c for c, _ in callers[1:]} == {"ok"}, callers


def test_chromium_renders_the_charts(page: tuple[Path, str], tmp_path: Path) -> None:
    html, _ = page
    dom = headless("--dump-dom", html.as_uri(), profile=tmp_path / "profile-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert dom.stdout.count('class="kex-classical"') >= 1 and dom.stdout.count('class="kex-pq"') >= 2, dom.stdout[:2000]
    assert len(re.findall(r'class="t-(pq|classical)"', dom.stdout)) >= 4, "the timeline has bars"
    shot = tmp_path / "inventory.png"
    done = headless(f"--screenshot={shot}", "--window-size=1200,1400", html.as_uri(), profile=tmp_path / "profile-shot")
    assert done.returncode == 0 and shot.is_file(), done.stderr[-2000:]
    image = Image.open(shot).convert("RGB")
    colours = image.getcolors(maxcolors=1 << 20) or []
    count = {rgb: n for n, rgb in colours}
    # The bars are drawn: a good many pixels of each class colour (a legend glyph alone is a few dozen).
    assert count.get(PQ, 0) > 2000, sorted(colours, reverse=True)[:8]
    assert count.get(CLASSICAL, 0) > 1000, sorted(colours, reverse=True)[:8]
