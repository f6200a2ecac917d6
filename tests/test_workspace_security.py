"""The workspace's security list (issue 15), each against `flowpivot serve` running for real:

- no token on a non-loopback bind refuses to start;
- a wrong token is refused (and the right one, in any of its forms, is accepted);
- a cross-site POST is refused (Origin, Sec-Fetch-Site, a form without the form token);
- path traversal in export names is refused, and nothing is written outside the workspace;
- an oversized upload is refused (by Content-Length and while it streams);
- hostile AS names and whois strings are shown as text on every page.

Oracles: the status codes and the server's own state afterwards (its hunts and files), Python's
html.parser for what a browser would build from the pages, the hand-made hostile inputs.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import httpx
import pytest
from conftest import free_tcp_port
from workspace_server import Scenario, Server, env, fin7, running, serve_cmd, wait_hunt

pytestmark = pytest.mark.slow

HTML = '<script>alert("owned")</script><img src=x onerror=alert(1)>'
EVIL = "\x1b[2J\x1b]0;pwned\x07 ``x`` \u202eevil"


@pytest.fixture(scope="module")
def scen(tmp_path_factory: pytest.TempPathFactory) -> Scenario:
    return fin7(tmp_path_factory.mktemp("ws-sec"), flows=60_000)


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def test_no_token_on_a_non_loopback_bind_refuses_to_start(scen: Scenario, tmp_path: Path) -> None:
    port = free_tcp_port("0.0.0.0")
    cmd = serve_cmd("--store", str(scen.store), "--workspace", str(tmp_path / "ws"), "--listen", f"0.0.0.0:{port}")
    r = subprocess.run(cmd, capture_output=True, text=True, env=env(), timeout=60)
    assert r.returncode == 2
    assert "refusing to listen on 0.0.0.0" in r.stderr and "--token-file" in r.stderr
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/", timeout=2)


@pytest.fixture(scope="module")
def guarded(scen: Scenario, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, str]]:
    d = tmp_path_factory.mktemp("guarded")
    token_file = d / "token"
    with running(scen.store, d / "ws", "--token-file", str(token_file), "--max-upload", "0.01",
                 host="0.0.0.0") as s:  # fmt: skip
        token = token_file.read_text().strip()
        assert oct(token_file.stat().st_mode & 0o777) == "0o600"
        assert token in s.log.read_text()  # printed once, with the address to open
        yield s, token


def test_a_wrong_token_is_refused(guarded: tuple[Server, str]) -> None:
    s, token = guarded
    with s.client() as c:
        for headers in ({}, {"authorization": "Bearer " + "x" * 43}, {"x-flowpivot-token": token[:-1]},
                        {"cookie": "flowpivot_token=nope"}):  # fmt: skip
            for path in ("/", "/api/hunts", "/openapi.json", "/static/app.js", "/api/ip/1.2.3.4"):
                r = c.get(path, headers=headers)
                assert r.status_code == 401, (path, headers, r.status_code)
        assert c.get("/", params={"token": "wrong"}).status_code == 401
        assert c.get("/api/hunts", headers={"authorization": f"Bearer {token}"}).status_code == 200
        assert c.get("/api/hunts", headers={"x-flowpivot-token": token}).status_code == 200
        first = c.get("/ip/1.2.3.4", params={"token": token, "window": "1d"})
        assert first.status_code == 303 and first.headers["location"] == "/ip/1.2.3.4?window=1d"
        assert "HttpOnly" in first.headers["set-cookie"] and "SameSite=Strict" in first.headers["set-cookie"]
        assert c.get("/", headers={"cookie": f"flowpivot_token={token}"}).status_code == 200


def _form_token(c: httpx.Client, auth: dict[str, str]) -> str:
    page = c.get("/", headers=auth).text
    return page.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]


def test_a_cross_site_post_is_refused(guarded: tuple[Server, str], scen: Scenario) -> None:
    s, token = guarded
    auth = {"authorization": f"Bearer {token}"}
    seeds = scen.seeds.read_text()
    with s.client() as c:
        before = c.get("/api/hunts", headers=auth).json()
        ft = _form_token(c, auth)
        refused = [
            c.post("/api/hunts", json={"seeds": seeds}, headers={**auth, "origin": "http://evil.example"}),
            c.post("/api/hunts", json={"seeds": seeds}, headers={**auth, "origin": "null"}),
            c.post("/api/hunts", json={"seeds": seeds}, headers={**auth, "sec-fetch-site": "cross-site"}),
            c.post("/api/hunts", json={"seeds": seeds}, headers={**auth, "sec-fetch-site": "same-site"}),
            # what a foreign page's <form> sends: no JSON, no form token
            c.post("/hunts", data={"seeds": seeds}, headers=auth),
            c.post("/api/hunts/upload", data={"seeds": seeds, "csrf_token": "guess"}, headers=auth),
            c.post("/api/hunts", content=json.dumps({"seeds": seeds}), headers={**auth, "content-type": "text/plain"}),
            # the form token does not help a request the browser marks cross-site
            c.post(
                "/hunts", data={"seeds": seeds, "csrf_token": ft}, headers={**auth, "sec-fetch-site": "cross-site"}
            ),  # fmt: skip
        ]
        assert [r.status_code for r in refused] == [403] * len(refused)
        assert c.get("/api/hunts", headers=auth).json() == before  # nothing was started
        origin = s.url
        ok = c.post("/hunts", data={"seeds": seeds, "csrf_token": ft},
                    headers={**auth, "origin": origin, "sec-fetch-site": "same-origin"})  # fmt: skip
        assert ok.status_code == 303 and ok.headers["location"].startswith("/hunts/")
        assert wait_hunt(c, ok.headers["location"].rsplit("/", 1)[1], headers=auth)["status"] == "done"


TRAVERSAL = ["../escaped.json", "..", "../../etc/passwd", "a/b.json", "/tmp/abs.json", ".hidden", "x\\..\\y",
             "..%2fescaped", "exports/../../x", "ok\x00.json", "a" * 101, "", " spaced"]  # fmt: skip


def test_path_traversal_in_export_names_is_refused(guarded: tuple[Server, str], scen: Scenario) -> None:
    s, token = guarded
    auth = {"authorization": f"Bearer {token}"}
    root = s.workspace.parent
    with s.client(headers=auth) as c:
        h = c.post("/api/hunts", json={"seeds": scen.seeds.read_text()}).json()
        assert wait_hunt(c, h["id"])["status"] == "done"
        before = _files(root)
        for name in TRAVERSAL:
            r = c.post(f"/api/hunts/{h['id']}/exports", json={"format": "stix", "name": name})
            assert r.status_code in (400, 422), (name, r.status_code, r.text)
        for name in ("..%2F..%2Fetc%2Fpasswd", "%2e%2e", ".hidden"):
            assert c.get(f"/api/exports/{name}").status_code in (400, 404)
        assert c.get("/api/exports/x", params={"part": "../../etc/passwd"}).status_code == 400
        assert _files(root) == before  # nothing written anywhere
        good = c.post(f"/api/hunts/{h['id']}/exports", json={"format": "stix", "name": "fin7.stix.json"})
        assert good.status_code == 201
    assert (s.workspace / "exports" / "fin7.stix.json").is_file()
    assert _files(root) - before == {str((s.workspace / "exports" / "fin7.stix.json").relative_to(root))}


def test_uploaded_file_names_never_become_paths(guarded: tuple[Server, str], scen: Scenario) -> None:
    s, token = guarded
    root = s.workspace.parent
    before = _files(root)
    with s.client(headers={"authorization": f"Bearer {token}"}) as c:
        ft = _form_token(c, {})
        r = c.post("/api/hunts/upload", data={"csrf_token": ft},
                   files={"files": ("../../../escaped seeds.txt", scen.seeds.read_bytes(), "text/plain")})  # fmt: skip
        assert r.status_code == 202, r.text
        h = wait_hunt(c, r.json()["id"])
    new = _files(root) - before
    hunt_dir = str((s.workspace / "hunts" / h["id"]).relative_to(root))
    assert new and all(p.startswith(hunt_dir) or p == str((s.workspace / "hunts").relative_to(root)) for p in new), new
    assert (s.workspace / "hunts" / h["id"] / "seeds" / "01-escaped_seeds.txt").is_file()
    assert h["status"] == "done" and h["seeds"] == "escaped_seeds.txt"


def test_an_oversized_upload_is_refused(guarded: tuple[Server, str], scen: Scenario) -> None:
    s, token = guarded
    auth = {"authorization": f"Bearer {token}"}
    limit = int(0.01 * 1024 * 1024)
    big = (scen.seeds.read_text() * 1000).encode()[: limit * 3]
    with s.client(headers=auth) as c:
        ft = _form_token(c, {})
        before = c.get("/api/hunts").json()
        r = c.post("/api/hunts/upload", files={"files": ("big.txt", big, "text/plain")}, data={"csrf_token": ft})
        assert r.status_code == 413 and "limit" in r.json()["detail"]
        r = c.post("/api/hunts", json={"seeds": big.decode()})
        assert r.status_code == 413

        def chunks() -> Iterator[bytes]:  # no Content-Length: counted while it streams
            body = json.dumps({"seeds": big.decode()}).encode()
            for i in range(0, len(body), 4096):
                yield body[i : i + 4096]

        r = c.post("/api/hunts", content=chunks(), headers={"content-type": "application/json"})
        assert r.status_code == 413
        assert c.get("/api/hunts").json() == before
        small = c.post("/api/hunts/upload", files={"files": ("s.txt", scen.seeds.read_bytes(), "text/plain")},
                       data={"csrf_token": ft})  # fmt: skip
        assert small.status_code == 202


# ---- hostile names --------------------------------------------------------------------------------


class Doc(HTMLParser):
    """Elements, attributes and text as a browser's tree builder sees them."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse(html: str) -> Doc:
    d = Doc()
    d.feed(html)
    return d


def _hostile_sources(scen: Scenario, d: Path) -> tuple[Path, Path]:
    """The scenario's ASN table with every name made hostile, and a whois dump whose netname, descr,
    org-name and abuse mailbox are hostile for the seeds' and members' networks."""
    tsv = d / "hostile.tsv"
    lines = []
    for ln in scen.asn.read_text().splitlines():
        lo, hi, asn, cc, _name = ln.split("\t", 4)
        lines.append(f"{lo}\t{hi}\t{asn}\t{cc}\t{HTML} {EVIL.replace(chr(9), ' ')} AS{asn}")
    tsv.write_text("\n".join(lines) + "\n")
    objs = []
    for ln in scen.asn.read_text().splitlines():
        lo, hi, asn, *_ = ln.split("\t")
        if ":" in lo or asn not in ("44477", "62212", "12494"):
            continue
        objs.append(f"inetnum:        {lo} - {hi}\nnetname:        {HTML}\ndescr:          {EVIL}\n"
                    f"org:            ORG-EVIL{asn}\nstatus:         ASSIGNED PA\nsource:         TEST\n")  # fmt: skip
        objs.append(f"organisation:   ORG-EVIL{asn}\norg-name:       {HTML} {EVIL}\nabuse-c:        EV{asn}\n")
        objs.append(f"role:           evil\nnic-hdl:        EV{asn}\nabuse-mailbox:  x{asn}@evil.test\n")
    dump = d / "hostile.db"
    dump.write_text("\n".join(objs))
    return tsv, dump


def test_hostile_as_names_and_whois_strings_are_text_on_every_page(scen: Scenario, tmp_path: Path) -> None:
    tsv, dump = _hostile_sources(scen, tmp_path)
    with running(scen.store, tmp_path / "ws", "--asn-db", str(tsv), "--whois", str(dump)) as s, s.client() as c:
        h = c.post("/api/hunts", json={"seeds": scen.seeds.read_text()}).json()
        assert wait_hunt(c, h["id"])["status"] == "done"
        hid = h["id"]
        result = c.get(f"/api/hunts/{hid}/result").json()
        assert result["clusters"], "the hunt must find the planted clusters for the pages to show their names"
        cid = result["clusters"][0]["id"]
        member = result["clusters"][0]["members"][0]
        seed = result["seeds"][0]["ip"]
        inv = c.post("/api/investigations", json={"name": "hostile", "hunt": hid}).json()
        c.post(f"/api/investigations/{inv['id']}/runs", json={})
        for x in c.get("/api/hunts").json():
            wait_hunt(c, x["id"])
        c.put(f"/api/investigations/{inv['id']}/disclosed", json={"disclosed": "2024-04-20T00:00:00Z"})
        pages = ["/", f"/hunts/{hid}", f"/hunts/{hid}/clusters/{cid}", f"/ip/{member}?hunt={hid}", f"/ip/{seed}",
                 f"/flows?ip={member}", "/investigations", f"/investigations/{inv['id']}",
                 f"/investigations/{inv['id']}/diff", f"/investigations/{inv['id']}/takedown"]  # fmt: skip
        seen_names = 0
        for p in pages:
            r = c.get(p)
            assert r.status_code == 200, (p, r.status_code, r.text[:500])
            assert (
                "content-security-policy" in r.headers and "script-src 'self'" in r.headers["content-security-policy"]
            )
            doc = parse(r.text)
            scripts = [a for t, a in doc.tags if t == "script"]
            assert scripts == [{"src": "/static/app.js", "defer": None}], p
            assert not [t for t, _ in doc.tags if t in ("img", "iframe", "object", "embed")], p
            assert not [(t, k) for t, a in doc.tags for k in a if k.lower().startswith("on")], p
            text = "".join(doc.text)
            assert "\x1b" not in r.text and "\x07" not in r.text and "\u202e" not in r.text, p
            if HTML in text:  # the hostile name is there, as text, its controls visible
                seen_names += 1
                assert "\\x1b[2J\\x1b]0;pwned\\x07" in text and "\\u202eevil" in text, p
        assert seen_names >= 5  # the pages that show owners (profiles, hunt, cluster, diff ...) showed them
        assert HTML in "".join(parse(c.get(f"/ip/{member}").text).text)
        whois_page = "".join(parse(c.get(f"/ip/{member}").text).text)
        assert "allocation:" in whois_page and HTML in whois_page.split("allocation:", 1)[1]


def test_a_generated_token_is_printed_once_and_required(scen: Scenario, tmp_path: Path) -> None:
    with running(scen.store, tmp_path / "ws", "--generate-token", host="0.0.0.0") as s, s.client() as c:
        printed = [ln for ln in s.log.read_text().splitlines() if "?token=" in ln]
        assert len(printed) == 1 and "kept nowhere" in printed[0]
        token = printed[0].split("?token=", 1)[1].split()[0]
        assert c.get("/api/hunts").status_code == 401
        assert c.get("/api/hunts", headers={"authorization": f"Bearer {token}"}).status_code == 200
    assert not list(tmp_path.rglob("*token*"))  # kept nowhere
