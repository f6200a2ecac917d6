"""RDAP over real HTTP on 127.0.0.1, answering with the responses in tests/fixtures/rdap; the disk cache."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from flowpivot.enrich import Enricher, RdapClient

FIXTURES = Path(__file__).parent / "fixtures" / "rdap"


class _Server:
    def __init__(self) -> None:
        self.requests: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                outer.requests.append(self.path)
                name = "ip_" + self.path.removeprefix("/ip/").replace("/", "_") + ".json"
                f = FIXTURES / name
                if not self.path.startswith("/ip/") or not f.is_file():
                    self.send_response(404)
                    self.end_headers()
                    return
                body = f.read_text().replace("{BASE}", outer.base).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/rdap+json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_a: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


@pytest.fixture
def server() -> Iterator[_Server]:
    s = _Server()
    yield s
    s.stop()


def test_rdap_chain_follows_up_links(server: _Server, tmp_path: Path) -> None:
    client = RdapClient(tmp_path, server.base, public_only=False)
    chain = client.chain("198.18.5.7")
    assert [(c["range"], c["status"], c["org_name"], c["abuse_mailbox"]) for c in chain] == [
        ("198.18.5.0 - 198.18.5.255", "ASSIGNED PA", "Customer Shell Co", None),
        ("198.18.4.0 - 198.18.7.255", "SUB-ALLOCATED PA", "Resale Servers LLC", "abuse@resale-servers.test"),
        (
            "198.18.0.0 - 198.19.255.255",
            "ALLOCATED PA",
            "Example Hosting Ltd",
            "abuse@example-hosting.test",
        ),  # nested entity
    ]
    assert {c["source"] for c in chain} == {"rdap"}
    assert server.requests == ["/ip/198.18.5.7", "/ip/198.18.4.0/22", "/ip/198.18.0.0/15"]


def test_rdap_answers_come_from_the_cache_the_second_time(server: _Server, tmp_path: Path) -> None:
    first = RdapClient(tmp_path, server.base, public_only=False).chain("198.18.5.7")
    server.stop()  # nothing listens any more: only the cache can answer
    second_client = RdapClient(tmp_path, server.base, public_only=False)
    assert second_client.chain("198.18.5.7") == first
    assert second_client.queries == 0
    server.stop = lambda: None  # type: ignore[method-assign]  # already stopped


def test_enricher_uses_rdap_where_whois_has_nothing(server: _Server, tmp_path: Path) -> None:
    client = RdapClient(tmp_path, server.base, public_only=False)
    enr = Enricher.open([], None, rdap=client, cache_dir=tmp_path)
    a, missing = enr.lookup(["198.18.5.7", "192.0.2.55"])
    assert a["reseller"] == {
        "org": "ORG-RSL2-RIPE",
        "org_name": "Resale Servers LLC",
        "netname": "RESALE-SERVERS-NET",
        "range": "198.18.4.0 - 198.18.7.255",
    }
    assert a["abuse_mailbox"] == "abuse@resale-servers.test" and a["country"] == "RU" and a["country_source"] == "rdap"
    assert missing["allocation"] == []  # 404
    assert any(s["kind"] == "rdap" for s in enr.sources)


def test_private_and_documentation_space_is_never_sent(server: _Server, tmp_path: Path) -> None:
    enr = Enricher.open([], None, rdap=True, cache_dir=tmp_path, rdap_base=server.base)
    assert [a["allocation"] for a in enr.lookup(["10.1.2.3", "198.18.5.7", "2001:db8::1", "fe80::1"])] == [
        [],
        [],
        [],
        [],
    ]
    assert server.requests == []


def test_hostile_rdap_answer_is_data_and_file_links_are_not_followed(server: _Server, tmp_path: Path) -> None:
    chain = RdapClient(tmp_path, server.base, public_only=False).chain("203.0.113.66")
    assert server.requests == ["/ip/203.0.113.66"]  # the file: "up" link is not followed
    assert len(chain) == 1
    link = chain[0]
    assert link["netname"] == "<script>alert(1)</script>\x1b[31m"
    assert link["status"] is None and link["country"] is None and link["org"] is None and link["range"] is None


def test_query_budget(server: _Server, tmp_path: Path) -> None:
    client = RdapClient(tmp_path, server.base, max_queries=1, public_only=False)
    chain = client.chain("198.18.5.7")
    assert len(chain) == 1 and len(server.requests) == 1
    assert "more than 1 RDAP queries" in client.errors[0]
