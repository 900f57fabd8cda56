"""The upload limit on a real daphne: an upload past MAX_UPLOAD_BYTES is answered 413
`too_large` before its body is stored, whether it says its length or not (chunked), and
leaves no file and no row behind. (What a file is, the API and the model: test_attachments.py.)"""

from pathlib import Path

import httpx
import pytest

from tests.servers import login, manage

LIMIT = 50_000

pytestmark = [
    pytest.mark.slow,
    pytest.mark.site({"alice": "alice-pw"}, MAX_UPLOAD_BYTES=str(LIMIT)),
]

COUNT_ROWS = "from chat.models import Attachment; print('rows', Attachment.objects.count())"


def multipart(content: bytes, boundary: str = "b0undary") -> bytes:
    return (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.txt"\r\n'
            f"Content-Type: text/plain\r\n\r\n"
        ).encode()
        + content
        + f"\r\n--{boundary}--\r\n".encode()
    )


def stored_files(site) -> list[Path]:
    return [p for p in (Path(site.env["CHAT_VAR_DIR"]) / "attachments").rglob("*") if p.is_file()]


def test_an_upload_over_the_limit_is_refused_before_it_is_stored_with_or_without_a_length(site):
    alice = login(site.url, "alice", "alice-pw")
    headers = {"Content-Type": "multipart/form-data; boundary=b0undary"}
    big = multipart(b"x" * (LIMIT * 4))

    declared = alice.post("/api/attachments/", content=big, headers=headers)

    def chunks():  # no Content-Length: Transfer-Encoding: chunked
        for start in range(0, len(big), 8192):
            yield big[start : start + 8192]

    try:
        chunked = alice.post("/api/attachments/", content=chunks(), headers=headers)
    except httpx.WriteError:  # the server answered and closed while we were still sending
        pytest.fail("the refusal must be readable, not a reset connection")
    for answer in (declared, chunked):
        assert answer.status_code == 413, answer.text
        assert answer.json()["code"] == "too_large"

    assert stored_files(site) == []
    assert "rows 0" in manage(site.env, "shell", "-c", COUNT_ROWS)


def test_an_upload_cut_midway_leaves_no_file_and_no_row(site):
    """The client goes away half-way through a file within the limit: Django never got the
    whole body, so no view ran, nothing was stored, and the next upload works."""
    import socket
    import time

    alice = login(site.url, "alice", "alice-pw")
    body = multipart(b"y" * (LIMIT // 2))
    cookies = "; ".join(f"{name}={value}" for name, value in alice.cookies.items())
    head = (
        "POST /api/attachments/ HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{site.port}\r\n"
        "Content-Type: multipart/form-data; boundary=b0undary\r\n"
        f"Content-Length: {len(body)}\r\n"
        f"Cookie: {cookies}\r\n"
        f"X-CSRFToken: {alice.cookies.get('csrftoken', '')}\r\n"
        f"Origin: {site.url}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", site.port)) as raw:
        raw.sendall(head + body[: len(body) // 2])
        time.sleep(0.3)
    time.sleep(0.5)  # daphne sees the disconnect and drops the request
    assert stored_files(site) == []
    assert "rows 0" in manage(site.env, "shell", "-c", COUNT_ROWS)
    whole = alice.post(
        "/api/attachments/",
        content=body,
        headers={"Content-Type": "multipart/form-data; boundary=b0undary"},
    )
    assert whole.status_code == 201, whole.text
    assert len(stored_files(site)) == 1
