"""Malformed requests get one 4xx JSON answer, and the server keeps serving valid ones."""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from fake_providers import FakeProvider, ThreadedFakeProvider

VALID = json.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}).encode()
PATHS = [
    "/v1/chat/completions",
    "/v1/messages",
    "/v1/responses",
    "/openai/deployments/d/chat/completions?api-version=1",
]


@pytest.fixture(scope="module")
def shared_provider() -> Iterator[FakeProvider]:
    with ThreadedFakeProvider() as started:
        yield started


def exchange(port: int, payload: bytes) -> bytes:
    """Send raw bytes, half-close, and read the whole answer (bounded by a timeout)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(payload)
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def assert_json_4xx(answer: bytes) -> None:
    """The first response on the wire is a 4xx with a JSON body (more may follow)."""
    head, _, rest = answer.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    assert 400 <= status < 500, answer[:200]
    length = int(re.search(rb"content-length: (\d+)", head, re.IGNORECASE)[1])  # type: ignore[index]
    assert json.loads(rest[:length]), answer[:200]


def assert_still_serving(port: int) -> None:
    request = (
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nconnection: close\r\n"
        b"content-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (len(VALID), VALID)
    )
    assert exchange(port, request).startswith(b"HTTP/1.1 200 ")


token = st.text(
    alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=12
)
junk = st.binary(min_size=1, max_size=80)
fuzz_settings = settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@fuzz_settings
@given(line=junk)
def test_garbage_request_lines(shared_provider: FakeProvider, line: bytes) -> None:
    assume(b"\r\n" not in line and b"\n" not in line)
    assert_json_4xx(exchange(shared_provider.port, line + b"\r\nhost: x\r\n\r\n"))
    assert_still_serving(shared_provider.port)


@fuzz_settings
@given(name=junk, value=junk)
def test_broken_headers(shared_provider: FakeProvider, name: bytes, value: bytes) -> None:
    assume(not (name.replace(b"-", b"").isalnum() and b"\n" not in value and b"\r" not in value))
    request = b"POST /v1/messages HTTP/1.1\r\nhost: x\r\n" + name + b": " + value + b"\r\n\r\n"
    assert_json_4xx(exchange(shared_provider.port, request))
    assert_still_serving(shared_provider.port)


@fuzz_settings
@given(
    path=st.sampled_from(PATHS), body=st.one_of(junk, st.from_type(type(None)).map(lambda _: b""))
)
def test_bodies_that_are_not_a_valid_request(
    shared_provider: FakeProvider, path: str, body: bytes
) -> None:
    try:
        decoded = json.loads(body)
    except ValueError:
        decoded = None
    assume(not isinstance(decoded, dict))
    request = (
        b"POST %s HTTP/1.1\r\nhost: x\r\nconnection: close\r\n"
        b"content-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
        % (path.encode(), len(body), body)
    )
    assert_json_4xx(exchange(shared_provider.port, request))
    assert_still_serving(shared_provider.port)


@fuzz_settings
@given(declared=st.integers(min_value=1, max_value=10_000), sent=junk)
def test_truncated_bodies(shared_provider: FakeProvider, declared: int, sent: bytes) -> None:
    assume(len(sent) < declared)
    request = b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-length: %d\r\n\r\n%s" % (
        declared,
        sent,
    )
    assert_json_4xx(exchange(shared_provider.port, request))
    assert_still_serving(shared_provider.port)


@fuzz_settings
@given(
    field=st.sampled_from(["model", "messages"]),
    value=st.one_of(st.integers(), st.none(), st.booleans(), st.floats(allow_nan=False)),
)
def test_wrong_field_types(shared_provider: FakeProvider, field: str, value: object) -> None:
    body = json.dumps({"model": "gpt-4o", "messages": [], field: value}).encode()
    request = (
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nconnection: close\r\n"
        b"content-length: %d\r\n\r\n%s" % (len(body), body)
    )
    assert_json_4xx(exchange(shared_provider.port, request))
