"""What an uploaded file is, from its bytes alone, and what of it a model may be given.

Every byte is untrusted: the client's file name and content type are never believed. A file is
one of three kinds (docs/protocol.md, "Attachments"):

- `image`: PNG, JPEG, WebP or GIF (never SVG), decoded whole by Pillow to prove it is one,
  refused past IMAGE_MAX_PIXELS before it is decoded (a decompression bomb), then re-encoded
  without its metadata (no camera, no location) and scaled to IMAGE_MAX_SIDE on its long side:
  what is stored is what a model is shown.
- `document`: a PDF, whose text pypdf reads (at most PDF_MAX_PAGES pages; an encrypted or
  broken one is refused).
- `text`: UTF-8 text with no NUL (plain text, Markdown, CSV, JSON, source code).

Anything else, or a file whose name claims a type its bytes are not (HTML named .png, a
program named .pdf), is refused as `bad_request` (HTTP 415; an empty or unreadable one:
400). A text's or PDF's text past ATTACHMENT_TEXT_CHARS is cut, with a note saying so, never
silently.

Pure functions on bytes, no database: services.py stores what `inspect` returns.
"""

import io
import warnings
from dataclasses import dataclass
from pathlib import PurePosixPath

import filetype
from django.conf import settings
from PIL import Image, UnidentifiedImageError
from pypdf import PdfReader
from pypdf.errors import PyPdfError

from chat.errors import ChatError

IMAGE_TYPES = {
    "image/png": "PNG",
    "image/jpeg": "JPEG",
    "image/webp": "WEBP",
    "image/gif": "GIF",
}
IMAGE_MAX_PIXELS = 40_000_000  # refused before decoding: no decompression bomb
IMAGE_MAX_SIDE = 2048  # what a model is shown, and stored
PDF_MAX_PAGES = 500
# Extensions that name a binary type: a file so named must be that type (a .png of HTML is a lie).
CLAIMED = {
    ".png": "image",
    ".jpg": "image",
    ".jpeg": "image",
    ".gif": "image",
    ".webp": "image",
    ".pdf": "document",
    ".exe": "binary",
    ".dll": "binary",
    ".so": "binary",
    ".bin": "binary",
    ".zip": "binary",
    ".gz": "binary",
}
NAME_CHARS = 200


@dataclass(frozen=True)
class Inspected:
    """An upload as it will be stored: its kind, type, bytes and text."""

    name: str
    kind: str  # image | text | document
    mime_type: str
    content: bytes  # what is stored (an image re-encoded, anything else as sent)
    text: str = ""  # a text's or PDF's text for the model, cut to ATTACHMENT_TEXT_CHARS
    cut: bool = False  # whether the text was cut


def clean_name(name: str) -> str:
    """The file's name as shown: its last path part, printable, at most NAME_CHARS."""
    base = PurePosixPath(str(name).replace("\\", "/")).name
    printable = "".join(ch for ch in base if ch.isprintable() and ch not in '"<>')
    return printable.strip()[:NAME_CHARS] or "file"


def inspect(name: str, content: bytes) -> Inspected:
    """What the upload is, checked; a `ChatError` (415 or 400) says why it is refused."""
    name = clean_name(name)
    if not content:
        raise ChatError("bad_request", "The file is empty.")
    claimed = CLAIMED.get(PurePosixPath(name).suffix.lower())
    sniffed = filetype.guess(content)
    mime = sniffed.mime if sniffed is not None else None
    if mime in IMAGE_TYPES:
        _claims(name, claimed, "image")
        image, stored_mime = _image(content, mime)
        return Inspected(name, "image", stored_mime, image)
    if mime == "application/pdf":
        _claims(name, claimed, "document")
        text, cut = _cut(_pdf_text(content))
        return Inspected(name, "document", mime, content, text, cut)
    if mime is None and (text := _utf8_text(content)) is not None:
        _claims(name, claimed, "text")
        text, cut = _cut(text)
        return Inspected(name, "text", "text/plain", content, text, cut)
    what = f"a {mime} file" if mime else "not text, a PDF or an image"
    raise ChatError(
        "bad_request",
        f"{name} is {what}: attach text, PDF, or PNG, JPEG, WebP or GIF images.",
        http_status=415,
    )


def _claims(name: str, claimed: str | None, kind: str) -> None:
    """Refuse a name that claims another type than the bytes are."""
    if claimed is not None and claimed != kind:
        raise ChatError(
            "bad_request", f"{name} is named as another type than it is.", http_status=415
        )


def _utf8_text(content: bytes) -> str | None:
    """The bytes as text, if they are UTF-8 text (no NUL, few control characters)."""
    if b"\x00" in content:
        return None
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError:
        return None
    controls = sum(1 for ch in text[:10000] if ord(ch) < 32 and ch not in "\t\n\r\f")
    return text if controls <= len(text[:10000]) // 100 else None


def _image(content: bytes, mime: str) -> tuple[bytes, str]:
    """The image decoded whole (proof it is one), without metadata, at most IMAGE_MAX_SIDE on
    its long side, re-encoded in its own format (a GIF as its first frame, in PNG)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(content)) as opened:
                width, height = opened.size
                if width * height > IMAGE_MAX_PIXELS:
                    raise ChatError(
                        "bad_request",
                        f"The image is {width}x{height} pixels; the most is "
                        f"{IMAGE_MAX_PIXELS // 1_000_000} million.",
                    )
                opened.seek(0)
                image = opened.convert("RGBA" if _has_alpha(opened) else "RGB")
    except ChatError:
        raise
    except (
        UnidentifiedImageError,
        OSError,
        ValueError,
        SyntaxError,
        Image.DecompressionBombError,
        Image.DecompressionBombWarning,
    ) as exc:
        raise ChatError(
            "bad_request", f"The image could not be read: {exc.__class__.__name__}."
        ) from None
    image.thumbnail((IMAGE_MAX_SIDE, IMAGE_MAX_SIDE))
    kind = IMAGE_TYPES[mime]
    if kind == "GIF":
        kind, mime = "PNG", "image/png"
    if kind == "JPEG" and image.mode == "RGBA":
        image = image.convert("RGB")
    out = io.BytesIO()
    image.save(out, format=kind, **({"quality": 90} if kind in ("JPEG", "WEBP") else {}))
    return out.getvalue(), mime


def _has_alpha(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info


def _pdf_text(content: bytes) -> str:
    """A PDF's text, page after page; a broken, encrypted or too long PDF is refused."""
    try:
        reader = PdfReader(io.BytesIO(content))
        if reader.is_encrypted:
            raise ChatError("bad_request", "The PDF is encrypted: attach one without a password.")
        if len(reader.pages) > PDF_MAX_PAGES:
            raise ChatError("bad_request", f"The PDF has more than {PDF_MAX_PAGES} pages.")
        pages = []
        budget = settings.ATTACHMENT_TEXT_CHARS + 1
        for page in reader.pages:
            pages.append(page.extract_text() or "")
            budget -= len(pages[-1])
            if budget <= 0:
                break  # enough to fill the budget: the rest would be cut anyway
        return "\n\n".join(pages).strip()
    except ChatError:
        raise
    except (PyPdfError, ValueError, KeyError, TypeError, OSError, RecursionError) as exc:
        raise ChatError(
            "bad_request", f"The PDF could not be read: {exc.__class__.__name__}."
        ) from None


def _cut(text: str) -> tuple[str, bool]:
    """The text within ATTACHMENT_TEXT_CHARS, and whether it was cut."""
    limit = settings.ATTACHMENT_TEXT_CHARS
    if len(text) <= limit:
        return text, False
    return text[:limit], True


def for_model(name: str, text: str, cut: bool) -> str:
    """A text attachment as the model reads it: its name, its text, and a note if cut."""
    note = (
        f"\n[The file is longer: only its first {len(text):,} characters are given.]" if cut else ""
    )
    return f"\n\n--- Attached file: {name} ---\n{text}{note}\n--- End of {name} ---"
