"""No input ends the provider: malformed requests get one 4xx JSON answer, every port
(model routes, control API, TLS handshake) keeps serving a correct stream afterwards.

Bounded (a few hundred examples in all, loopback only); `benchmarks/fuzz_provider.py` is
the long version."""

from __future__ import annotations

import contextlib
import json
import re
import socket
from collections.abc import Iterator

import httpx
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


STREAM = json.dumps({**json.loads(VALID), "stream": True}).encode()


def assert_still_serving(port: int) -> None:
    """A whole, correct stream: 200, chunked SSE, the terminal [DONE] and the last chunk."""
    request = (
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nconnection: close\r\n"
        b"content-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (len(STREAM), STREAM)
    )
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(request)
        answer = read_all(sock)
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]
    assert answer.endswith(b"data: [DONE]\n\n\r\n0\r\n\r\n"), answer[-200:]


def read_all(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


token = st.text(
    alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=12
)
junk = st.binary(min_size=1, max_size=80)
fuzz_settings = settings(
    max_examples=100,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
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


# ------------------------------------------------------------- structured but hostile

METHODS = st.sampled_from(["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "X-Y"])
TARGETS = st.sampled_from(
    [
        *PATHS,
        "/v1/models",
        "/v1beta/models/g:streamGenerateContent?alt=sse",
        "/v1beta/models/%ff:generateContent",
        "/__harness/ledger?events=0&bodies=1",
        "/__harness/faults",
        "/__harness/gates/%2F%00/release",
        "/__harness/reset",
        "/" + "a" * 3000,
        "*",
    ]
)
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
FIELDS = st.sampled_from(
    [
        "model",
        "messages",
        "stream",
        "max_tokens",
        "max_completion_tokens",
        "contents",
        "generationConfig",
        "input",
        "stream_options",
        "tools",
        "spec",
        "rules",
    ]
)
HOSTILE_BODIES = st.one_of(
    st.dictionaries(FIELDS, JSON_VALUES, max_size=5).map(lambda d: json.dumps(d).encode()),
    st.integers(min_value=1, max_value=20_000).map(lambda n: b"[" * n + b"]" * n),
    st.integers(min_value=1, max_value=20_000).map(lambda n: b'{"a":' * n + b"1" + b"}" * n),
    st.sampled_from(
        [b'{"max_tokens": 1' + b"0" * 5000 + b"}", b'{"rules": [{}]}', rb'{"model": "\ud800"}']
    ),
    junk,
)


def hostile_request(method: str, target: str, body: bytes, headers: list[bytes]) -> bytes:
    head = b"%s %s HTTP/1.1\r\nhost: x\r\nconnection: close\r\n" % (
        method.encode(),
        target.encode(),
    )
    return head + b"".join(headers) + b"content-length: %d\r\n\r\n%s" % (len(body), body)


EXTRA_HEADERS = st.lists(
    st.sampled_from(
        [
            b"x-stainless-retry-count: 99999999999999999999999999\r\n",
            b"x-stainless-retry-count: \xb2\r\n",
            b"expect: 100-continue\r\n",
            b"authorization: Bearer sk-fuzz\r\n",
            b"content-type: text/plain\r\n",
            b"x-big: " + b"b" * 8000 + b"\r\n",
            b"transfer-encoding: gzip\r\n",
        ]
    ),
    max_size=3,
    unique=True,
)


@fuzz_settings
@given(method=METHODS, target=TARGETS, body=HOSTILE_BODIES, headers=EXTRA_HEADERS)
def test_structured_hostile_requests_get_an_answer_and_never_a_5xx(
    shared_provider: FakeProvider, method: str, target: str, body: bytes, headers: list[bytes]
) -> None:
    with socket.create_connection(("127.0.0.1", shared_provider.port), timeout=5) as sock:
        sock.sendall(hostile_request(method, target, body, headers))
        answer = read_all(sock)
    shared_provider.reset()  # a fuzzed POST /__harness/faults may have added a rule
    assert answer.startswith(b"HTTP/1.1 "), answer[:200]
    status = int(answer.split(b" ", 2)[1])
    assert status < 500, answer[:300]
    assert_still_serving(shared_provider.port)


@settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(payload=st.binary(min_size=1, max_size=2048))
def test_raw_bytes_never_end_the_server(shared_provider: FakeProvider, payload: bytes) -> None:
    with contextlib.suppress(OSError):
        exchange(shared_provider.port, payload)
    assert_still_serving(shared_provider.port)


@pytest.fixture(scope="module")
def tls_provider() -> Iterator[tuple[FakeProvider, httpx.Client]]:
    with ThreadedFakeProvider(tls=True) as started:
        assert started.tls is not None
        fresh = httpx.Limits(max_keepalive_connections=0)  # every check is a new handshake
        with httpx.Client(verify=started.tls.client_context(), timeout=5, limits=fresh) as client:
            yield started, client


@settings(
    max_examples=20,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    payload=st.one_of(junk, st.just(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40))
)
def test_the_tls_handshake_survives_garbage(
    tls_provider: tuple[FakeProvider, httpx.Client], payload: bytes
) -> None:
    provider, client = tls_provider
    with contextlib.suppress(OSError):
        exchange(provider.port, payload)
    r = client.post(provider.url() + "/chat/completions", json=json.loads(STREAM))
    assert r.status_code == 200
    assert r.text.endswith("data: [DONE]\n\n")
