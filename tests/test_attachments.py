"""Attachments: what a file is from its bytes (chat/attachments.py), the upload API, the files
a model is given on the socket and the streaming POST, the owner-only rule, the sweeper and
the storage. (Several processes, the upload limit on daphne and the page: test_transports.py,
test_attachments_server.py and the browser tests.)"""

import datetime
import io
import json
import uuid

import pytest
from channels.db import database_sync_to_async
from django.core.files.storage import storages
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import AsyncClient, Client
from django.utils import timezone
from PIL import Image

from chat import attachments, services
from chat.errors import ChatError
from chat.models import Attachment, Message, Thread
from chat.upload_limit import UploadLimit
from tests.helpers import connect, frames_until_end, receive, send, start_command

pytestmark = pytest.mark.django_db(transaction=True)


def png(width: int = 64, height: int = 48, *, exif: bool = False) -> bytes:
    image = Image.new("RGB", (width, height), (200, 30, 30))
    out = io.BytesIO()
    if exif:
        info = Image.Exif()
        info[0x010F] = "SecretCam"  # Make
        image.save(out, format="JPEG", exif=info)
    else:
        image.save(out, format="PNG")
    return out.getvalue()


def pdf(text: str) -> bytes:
    """A one-page PDF whose page says `text` (written by hand: the smallest valid one)."""
    stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n" % number + body + b"\nendobj\n")
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    for offset in offsets:
        out.write(b"%010d 00000 n \n" % offset)
    out.write(
        b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    )
    return out.getvalue()


@pytest.fixture(autouse=True)
def storage(settings, tmp_path):
    """Attachments in a folder of this test's own: a second storage location."""
    settings.STORAGES = {
        **settings.STORAGES,
        "attachments": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(tmp_path / "files")},
        },
    }
    return tmp_path / "files"


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def upload_file(client: Client, name: str, content: bytes):
    return client.post("/api/attachments/", {"file": SimpleUploadedFile(name, content)})


# --- what a file is ------------------------------------------------------------------------


def test_text_pdf_and_images_are_told_by_their_bytes():
    text = attachments.inspect("notes.md", "# Plan\nbuy milk ✓".encode())
    assert (text.kind, text.mime_type, text.text) == ("text", "text/plain", "# Plan\nbuy milk ✓")
    document = attachments.inspect("report.pdf", pdf("Quarterly figures rose"))
    assert document.kind == "document" and "Quarterly figures rose" in document.text
    image = attachments.inspect("../../etc/photo.png", png())
    assert (image.kind, image.mime_type, image.name) == ("image", "image/png", "photo.png")


def test_an_image_is_stored_without_its_metadata_and_scaled_for_the_model():
    photo = attachments.inspect("photo.jpg", png(4000, 1000, exif=True))
    assert photo.mime_type == "image/jpeg" and b"SecretCam" not in photo.content
    with Image.open(io.BytesIO(photo.content)) as stored:
        assert stored.size == (2048, 512)


@pytest.mark.parametrize(
    "name, content, says",
    [
        ("empty.txt", b"", "empty"),
        ("page.png", b"<html><script>alert(1)</script></html>", "another type"),
        ("tool.pdf", b"\x7fELF\x02\x01\x01" + b"\x00" * 200, "a application/x-executable"),
        ("broken.pdf", b"%PDF-1.4\n1 0 obj << /Type /Catalog", "could not be read"),
        ("drawing.svg", b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"/>', None),
        ("data.bin", bytes(range(256)) * 4, "not text, a PDF or an image"),
        ("truncated.png", png()[:60], "could not be read"),
    ],
)
def test_a_file_that_is_not_what_it_claims_or_cannot_be_read_is_refused(name, content, says):
    if name == "drawing.svg":  # SVG is text: taken as text, never as an image
        assert attachments.inspect(name, content).kind == "text"
        return
    with pytest.raises(ChatError) as refused:
        attachments.inspect(name, content)
    assert refused.value.code == "bad_request" and says in refused.value.message


def test_a_decompression_bomb_is_refused_before_it_is_decoded():
    bomb = io.BytesIO()
    Image.new("1", (10_000, 5_000)).save(bomb, format="PNG")  # 50 Mpx in a few KB
    assert len(bomb.getvalue()) < 100_000
    with pytest.raises(ChatError, match="million"):
        attachments.inspect("bomb.png", bomb.getvalue())


def test_a_long_text_is_cut_with_a_note(settings):
    settings.ATTACHMENT_TEXT_CHARS = 100
    long = attachments.inspect("long.txt", b"x" * 500)
    assert len(long.text) == 100 and long.cut
    assert "only its first 100 characters" in attachments.for_model("long.txt", long.text, True)


# --- the upload API ------------------------------------------------------------------------


def test_an_upload_is_stored_in_the_configured_storage_and_served_to_its_owner_only(
    alice, bob, storage
):
    made = upload_file(logged_in(alice), "notes.txt", b"remember the milk")
    assert made.status_code == 201
    body = made.json()
    assert (body["kind"], body["mime_type"], body["size"]) == ("text", "text/plain", 17)
    row = Attachment.objects.get()
    assert (storage / row.path).read_bytes() == b"remember the milk"
    got = logged_in(alice).get(body["url"])
    assert got.status_code == 200 and b"".join(got.streaming_content) == b"remember the milk"
    assert got["X-Content-Type-Options"] == "nosniff"
    assert got["Content-Disposition"].startswith("attachment;"), "a text file is a download"
    assert logged_in(bob).get(body["url"]).status_code == 404
    assert logged_in(bob).delete(f"/api/attachments/{row.id}/").status_code == 404
    image = upload_file(logged_in(alice), "dot.png", png()).json()
    shown = logged_in(alice).get(image["url"])
    assert "Content-Disposition" not in shown or "inline" in shown["Content-Disposition"]


@pytest.mark.parametrize(
    "name, content, status, code",
    [
        ("page.png", b"<html></html>", 415, "bad_request"),
        ("tool.pdf", b"\x7fELF\x02\x01\x01" + b"\x00" * 200, 415, "bad_request"),
        ("empty.txt", b"", 400, "bad_request"),
    ],
)
def test_a_refused_upload_stores_nothing(alice, storage, name, content, status, code):
    refused = upload_file(logged_in(alice), name, content)
    assert refused.status_code == status and refused.json()["code"] == code
    assert not Attachment.objects.exists()
    assert not any(p.is_file() for p in storage.rglob("*"))


def test_an_upload_past_the_users_quota_is_refused(alice, settings, storage):
    settings.UPLOAD_QUOTA_BYTES = 30
    client = logged_in(alice)
    assert upload_file(client, "a.txt", b"x" * 20).status_code == 201
    refused = upload_file(client, "b.txt", b"y" * 20)
    assert refused.status_code == 429 and refused.json()["code"] == "quota_exceeded"
    assert Attachment.objects.count() == 1
    assert sum(1 for p in storage.rglob("*") if p.is_file()) == 1


def test_an_unsent_upload_can_be_removed_and_a_sent_one_cannot(alice, storage):
    client = logged_in(alice)
    made = upload_file(client, "a.txt", b"text").json()
    assert client.delete(f"/api/attachments/{made['id']}/").status_code == 204
    assert not Attachment.objects.exists() and not any(p.is_file() for p in storage.rglob("*"))


@pytest.mark.asyncio
async def test_the_upload_limit_answers_413_before_reading_the_body(settings):
    settings.MAX_UPLOAD_BYTES = 1000
    read = []

    async def inner(scope, receive, send):  # Django would read the body here
        read.append(await receive())

    sent = []

    async def send(message):
        sent.append(message)

    async def receive():
        return {"type": "http.request", "body": b"x" * 50_000, "more_body": True}

    scope = {
        "type": "http",
        "path": "/api/attachments/",
        "method": "POST",
        "headers": [(b"content-length", b"10000000")],
    }
    await UploadLimit(inner)(scope, receive, send)
    assert sent[0]["status"] == 413 and read == [], "refused from the header alone"
    assert json.loads(sent[1]["body"])["code"] == "too_large"
    # Chunked, no length: cut off as the bytes pass the limit.
    sent.clear()

    async def reads_all(scope, receive, send):
        while True:
            await receive()

    await UploadLimit(reads_all)({**scope, "headers": []}, receive, send)
    assert sent[0]["status"] == 413


# --- what the model gets -------------------------------------------------------------------


def requests_of(stub) -> list[dict]:
    return [r["body"] for r in stub.requests if r["path"].endswith("/chat/completions")]


@database_sync_to_async
def uploaded(user, name: str, content: bytes) -> str:
    return str(services.attachment_create(owner=user, name=name, content=content).id)


@pytest.mark.asyncio
async def test_text_and_pdf_reach_the_model_as_text_and_an_image_as_a_data_url(
    stub, settings, alice
):
    settings.AGENT_VISION_MODELS = ["stub-model"]
    ids = [
        await uploaded(alice, "notes.txt", b"the milk is in the fridge"),
        await uploaded(alice, "report.pdf", pdf("Revenue grew four percent")),
        await uploaded(alice, "dot.png", png()),
    ]
    thread = await Thread.objects.acreate(owner=alice, title="files")
    ws = await connect(thread.id, alice)
    await receive(ws)
    await send(ws, {**start_command("what do these say?"), "attachments": ids})
    received = await frames_until_end(ws)
    await ws.disconnect()
    asked = next(f for f in received if f["type"] == "message")["message"]
    assert [a["name"] for a in asked["attachments"]] == ["notes.txt", "report.pdf", "dot.png"]
    (request,) = requests_of(stub)
    user = request["messages"][-1]
    text = next(p["text"] for p in user["content"] if p["type"] == "text")
    assert "what do these say?" in text and "the milk is in the fridge" in text
    assert "Revenue grew four percent" in text and "report.pdf" in text
    image = next(p for p in user["content"] if p["type"] == "image_url")
    assert image["image_url"]["url"].startswith("data:image/png;base64,")


@pytest.mark.asyncio
async def test_an_image_for_a_model_without_vision_is_refused_and_nothing_is_saved(stub, alice):
    image = await uploaded(alice, "dot.png", png())
    thread = await Thread.objects.acreate(owner=alice, title="files")
    ws = await connect(thread.id, alice)
    await receive(ws)
    await send(ws, {**start_command("look"), "attachments": [image]})
    refused = await receive(ws)
    assert refused["code"] == "bad_request" and "stub-model" in refused["message"]
    await ws.disconnect()
    assert not await Message.objects.aexists() and requests_of(stub) == []
    assert (await Attachment.objects.aget()).message_id is None, "still the user's to send"


@pytest.mark.asyncio
async def test_another_users_or_a_removed_or_a_sent_attachment_is_refused(stub, alice, bob):
    bobs = await uploaded(bob, "b.txt", b"bob's")
    mine = await uploaded(alice, "a.txt", b"alice's")
    thread = await Thread.objects.acreate(owner=alice, title="files")
    client = AsyncClient()
    await client.aforce_login(alice)
    for ids in ([bobs], [str(uuid.uuid4())], ["not-a-uuid"], [mine] * 11):
        answer = await client.post(
            "/api/stream/message",
            {"message": "hi", "thread_id": str(thread.id), "attachments": ids},
            content_type="application/json",
        )
        assert answer.status_code == 400, ids
    assert not await Message.objects.aexists()
    ws = await connect(thread.id, alice)
    await receive(ws)
    await send(ws, {**start_command("first"), "attachments": [mine]})
    await frames_until_end(ws)
    await send(ws, {**start_command("again"), "attachments": [mine]})
    assert (await receive(ws))["code"] == "bad_request", "sent once already"
    await ws.disconnect()


@pytest.mark.asyncio
async def test_an_edit_keeps_its_files_unless_it_names_others(stub, alice):
    first = await uploaded(alice, "a.txt", b"version one")
    thread = await Thread.objects.acreate(owner=alice, title="files")
    ws = await connect(thread.id, alice)
    await receive(ws)
    await send(ws, {**start_command("read it"), "attachments": [first]})
    asked = (await frames_until_end(ws))[0]["message"]
    await send(ws, {"command": "edit", "message_id": asked["id"], "message": "read it again"})
    edited = await frames_until_end(ws)
    again = next(f for f in edited if f["type"] == "message")["message"]
    assert [a["name"] for a in again["attachments"]] == ["a.txt"], "the files go along"
    assert "version one" in json.dumps(requests_of(stub)[-1])
    kept = await Attachment.objects.aget(pk=first)
    assert str(kept.message_id) == asked["id"], "the old version keeps its own"
    second = await uploaded(alice, "b.txt", b"version two")
    await send(
        ws,
        {
            "command": "edit",
            "message_id": again["id"],
            "message": "this one",
            "attachments": [second],
        },
    )
    replaced = await frames_until_end(ws)
    await ws.disconnect()
    last = next(f for f in replaced if f["type"] == "message")["message"]
    assert [a["id"] for a in last["attachments"]] == [second]
    assert "version two" in json.dumps(requests_of(stub)[-1])
    assert "version one" not in json.dumps(requests_of(stub)[-1]), "only the path's files"
    assert await Attachment.objects.filter(pk=first).aexists(), "the old versions keep theirs"


def test_the_sweeper_removes_uploads_never_sent_after_a_day(alice, storage):
    stale = services.attachment_create(owner=alice, name="old.txt", content=b"old")
    fresh = services.attachment_create(owner=alice, name="new.txt", content=b"new")
    thread = Thread.objects.create(owner=alice)
    sent = services.attachment_create(owner=alice, name="sent.txt", content=b"sent")
    sent.message = Message.objects.create(thread=thread, role="user", content="x")
    sent.save()
    day_ago = timezone.now() - datetime.timedelta(hours=25)
    Attachment.objects.filter(pk__in=[stale.pk, sent.pk]).update(created_at=day_ago)
    assert services.attachments_sweep() == 1
    assert set(Attachment.objects.values_list("name", flat=True)) == {"new.txt", "sent.txt"}
    assert not storages["attachments"].exists(stale.path)
    assert storages["attachments"].exists(fresh.path)


def test_deleting_a_thread_removes_its_files(alice, storage):
    thread = Thread.objects.create(owner=alice)
    sent = services.attachment_create(owner=alice, name="sent.txt", content=b"sent")
    sent.message = Message.objects.create(thread=thread, role="user", content="x")
    sent.save()
    services.thread_delete(thread=thread)
    assert not Attachment.objects.exists()
    assert not storages["attachments"].exists(sent.path)


def test_the_export_lists_attachments(alice, storage):
    thread = Thread.objects.create(owner=alice, title="with files")
    sent = services.attachment_create(owner=alice, name="plan.txt", content=b"plan")
    sent.message = Message.objects.create(thread=thread, role="user", content="see the plan")
    sent.save()
    Thread.objects.filter(pk=thread.pk).update(active_leaf=sent.message)
    exported = logged_in(alice).get(f"/api/threads/{thread.id}/export/", {"format": "markdown"})
    assert "Attached: plan.txt (text/plain, 4 bytes)" in exported.content.decode()
    as_json = json.loads(
        logged_in(alice).get(f"/api/threads/{thread.id}/export/", {"format": "json"}).content
    )
    assert as_json["messages"][0]["attachments"][0]["name"] == "plan.txt"
