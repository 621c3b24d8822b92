"""Reading an inbound email: headers, bodies, attachments, the new text, and what kind of mail it is.

Pure functions over bytes (no database), built on the standard library's modern
`email` API (`policy.default`), which decodes encoded-word headers and body
charsets for us. Every step that can meet malformed input catches it and records a
*defect* instead of failing, because a message we cannot fully read must still be
stored for an agent to look at.
"""

from __future__ import annotations

import html as html_lib
import re
import unicodedata
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage, Message
from email.parser import BytesParser
from email.utils import getaddresses, parseaddr
from html.parser import HTMLParser

import nh3

from orderdesk.comms.services import AttachmentDraft

# Zero-width characters and bidirectional controls: they hide or reorder text, so a
# subject "Refund ‮gpj.exe" reads differently from what it is. Removed, not rendered.
INVISIBLE = dict.fromkeys(
    [
        *range(0x200B, 0x2010),  # zero-width space/joiners, LRM, RLM
        *range(0x202A, 0x202F),  # LRE, RLE, PDF, LRO, RLO
        *range(0x2060, 0x2065),  # word joiner, invisible operators
        *range(0x2066, 0x206A),  # LRI, RLI, FSI, PDI
        0x061C,  # Arabic letter mark
        0x180E,  # Mongolian vowel separator
        0xFEFF,  # zero-width no-break space / BOM
        0x00AD,  # soft hyphen
    ]
)

MESSAGE_ID = re.compile(r"<[^<>\s]+>")
C1_CONTROLS = re.compile("[\x80-\x9f]")


def _as_cp1252(match: re.Match) -> str:
    try:
        return match.group().encode("latin-1").decode("cp1252")
    except UnicodeDecodeError:
        return " "


def clean_line(value: str | None, limit: int = 998) -> tuple[str, bool]:
    """A header value fit to show: invisible and control characters removed, one line.

    Returns the cleaned text and whether anything had to be removed.
    """
    if not value:
        return "", False
    # Mail programs label Windows-1252 text as ISO-8859-1; its dashes and quotes then
    # decode to C1 control codes. Read them as Windows-1252 meant them (as browsers do).
    value = C1_CONTROLS.sub(_as_cp1252, value)
    cleaned = value.translate(INVISIBLE)
    cleaned = "".join(
        " " if unicodedata.category(ch) in ("Cc", "Zl", "Zp") else ch
        for ch in cleaned
        if unicodedata.category(ch) != "Cf"
    )
    cleaned = re.sub(r"\s+", " ", cleaned).strip()
    changed = cleaned != re.sub(r"\s+", " ", value).strip()
    return cleaned[:limit], changed


# ---------------------------------------------------------------- HTML


ALLOWED_TAGS = set(nh3.ALLOWED_TAGS) - {"area", "map"}
ALLOWED_ATTRIBUTES = {
    **{tag: set(attrs) for tag, attrs in nh3.ALLOWED_ATTRIBUTES.items()},
    "img": {"src", "alt", "width", "height"},
    "a": {"href"},
    "*": {"dir"},
}


def _keep_only_inline_images(tag: str, attribute: str, value: str) -> str | None:
    # Remote images tell the sender when and where the mail was read: drop them. An
    # inline image (cid:) is part of the message and stays.
    if tag == "img" and attribute == "src" and not value.lower().startswith("cid:"):
        return None
    return value


def sanitize_html(raw_html: str) -> str:
    """HTML that is safe to render in the console: an allow-list of tags and attributes,
    no scripts, styles, forms, event handlers or remote images; links open safely."""
    return nh3.clean(
        raw_html,
        tags=ALLOWED_TAGS,
        clean_content_tags={"script", "style", "head", "title", "noscript", "template", "iframe", "object"},
        attributes=ALLOWED_ATTRIBUTES,
        attribute_filter=_keep_only_inline_images,
        url_schemes={"http", "https", "mailto", "cid"},
        link_rel="noopener noreferrer nofollow",
    )


class _HtmlToText(HTMLParser):
    """Text of an HTML mail with quoted parts marked `> `, so the text rules find them."""

    BLOCK = {"p", "div", "br", "tr", "li", "h1", "h2", "h3", "h4", "h5", "h6", "table", "hr", "blockquote"}
    SKIP = {"script", "style", "head", "title"}
    # Containers mail programs put the quoted original in.
    QUOTE_MARKERS = ("gmail_quote", "yahoo_quoted", "moz-cite-prefix")
    # Outlook marks only the start of the original: everything after it is quoted.
    REST_QUOTED_MARKERS = ("divrplyfwdmsg", "appendonsend")

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.quote_depth = 0
        self.skip_depth = 0
        self.stack: list[bool] = []  # per open element: did it start a quote?
        self.rest_quoted = False

    def handle_starttag(self, tag, attrs):
        if tag in self.SKIP:
            self.skip_depth += 1
        attributes = " ".join(f"{k}={v}" for k, v in attrs if v).lower()
        quote = tag == "blockquote" or any(m in attributes for m in self.QUOTE_MARKERS)
        if any(m in attributes for m in self.REST_QUOTED_MARKERS):
            self.rest_quoted = True
        if tag not in ("br", "hr", "img", "meta", "link", "input", "wbr", "col"):
            self.stack.append(quote)
            if quote:
                self.quote_depth += 1
        if tag in self.BLOCK:
            self.parts.append("\n")

    def handle_endtag(self, tag):
        if tag in self.SKIP and self.skip_depth:
            self.skip_depth -= 1
        if tag not in ("br", "hr", "img", "meta", "link", "input", "wbr", "col") and self.stack:
            if self.stack.pop() and self.quote_depth:
                self.quote_depth -= 1
        if tag in self.BLOCK:
            self.parts.append("\n")

    def handle_data(self, data):
        if self.skip_depth:
            return
        if self.quote_depth or self.rest_quoted:
            data = "\n".join("> " + line if line.strip() else line for line in data.split("\n"))
        self.parts.append(data)

    def text(self) -> str:
        joined = "".join(self.parts).replace("\xa0", " ")
        lines = [line.rstrip() for line in joined.split("\n")]
        return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def html_to_text(raw_html: str) -> str:
    parser = _HtmlToText()
    try:
        parser.feed(raw_html)
        parser.close()
    except Exception:  # HTMLParser is lenient, but be sure a broken page never stops a message
        return html_lib.unescape(re.sub(r"<[^>]+>", " ", raw_html))
    return parser.text()


# ---------------------------------------------------------------- the new text only

# Lines that introduce a quoted original, per mail program and language.
REPLY_HEADERS = [
    re.compile(r"^\s*On\b.{0,200}\bwrote:\s*$", re.I | re.S),  # Gmail, Apple Mail (en)
    re.compile(r"^\s*Am\b.{0,200}\bschrieb\b.{0,200}:\s*$", re.I | re.S),  # de
    re.compile(r"^\s*El\b.{0,200}\bescribi[óo]:\s*$", re.I | re.S),  # es
    re.compile(r"^\s*Le\b.{0,200}\ba écrit\s*:\s*$", re.I | re.S),  # fr
    re.compile(r"^\s*-{2,}\s*(Original Message|Ursprüngliche Nachricht|Mensaje original)\s*-{2,}\s*$", re.I),
    re.compile(r"^\s*_{20,}\s*$"),  # Outlook's rule above the quoted header block
    re.compile(r"^\s*(From|Von|De):\s.+$", re.I),  # Outlook's header block (checked with the next line)
]
FORWARD_MARKERS = [
    re.compile(r"^\s*-{5,}\s*Forwarded message\s*-{5,}\s*$", re.I),  # Gmail
    re.compile(r"^\s*Begin forwarded message:\s*$", re.I),  # Apple Mail
    re.compile(r"^\s*Anfang der weitergeleiteten Nachricht:\s*$", re.I),
    re.compile(r"^\s*-{2,}\s*Weitergeleitete Nachricht\s*-{2,}\s*$", re.I),
    re.compile(r"^\s*Inicio del mensaje reenviado:\s*$", re.I),
]
SIGNATURE_MARKERS = [
    re.compile(r"^--\s?$"),  # the standard signature separator
    re.compile(r"^\s*(Sent from my|Von meinem|Enviado desde mi|Envoyé de mon)\s.{0,40}$", re.I),
    re.compile(r"^\s*Get Outlook for (iOS|Android)\s*$", re.I),
]
OUTLOOK_HEADER_FOLLOWERS = re.compile(r"^\s*(Sent|Gesendet|Enviado|Date|Datum|Fecha|To|An|Para):\s", re.I)


def new_text(body: str) -> str:
    """The part of a reply the sender wrote now: quoted originals, `>` lines and the
    signature removed. A forward keeps the forwarded text when nothing was added."""
    lines = body.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    kept: list[str] = []
    forwarded_from: int | None = None
    for index, line in enumerate(lines):
        if any(p.match(line) for p in FORWARD_MARKERS):
            forwarded_from = index
            break
        if any(p.match(line) for p in SIGNATURE_MARKERS):
            break
        if REPLY_HEADERS[-1].match(line):
            following = lines[index + 1] if index + 1 < len(lines) else ""
            if OUTLOOK_HEADER_FOLLOWERS.match(following):
                break
            kept.append(line)
            continue
        if any(p.match(line) for p in REPLY_HEADERS[:-1]):
            break
        # "On Tue, 3 Mar 2026 at 10:12, Kim <kim@…>" + "wrote:" wrapped onto two lines (Gmail).
        if re.match(r"^\s*(On|Am|El|Le)\s.{10,}$", line) and index + 1 < len(lines):
            joined = line + " " + lines[index + 1]
            if any(p.match(joined) for p in REPLY_HEADERS[:4]):
                break
        if line.lstrip().startswith(">"):
            continue
        kept.append(line)
    text = "\n".join(kept).strip()
    if not text and forwarded_from is not None:
        # A bare forward: what was forwarded is the message.
        text = "\n".join(lines[forwarded_from + 1 :]).strip()
    return re.sub(r"\n{3,}", "\n\n", text)


# ---------------------------------------------------------------- the message


@dataclass(slots=True)
class ParsedEmail:
    message_id: str | None = None
    subject: str = ""
    subject_cleaned: bool = False
    sender_address: str | None = None
    sender_name: str | None = None
    recipients: list[dict] = field(default_factory=list)
    in_reply_to: str | None = None
    references: list[str] = field(default_factory=list)
    text_body: str | None = None
    html_body: str | None = None
    summary: str = ""
    attachments: list[AttachmentDraft] = field(default_factory=list)
    is_automated: bool = False
    automated_reason: str | None = None
    # What could not be read as it should; an agent sees these in triage.
    defects: list[str] = field(default_factory=list)


def _header(message: Message, name: str, defects: list[str]) -> str | None:
    try:
        value = message.get(name)
    except Exception as exc:  # a header the parser cannot make sense of
        defects.append(f"unreadable {name} header ({type(exc).__name__})")
        raw = message.get_all(name, failobj=[]) if hasattr(message, "get_all") else []
        return str(raw[0]) if raw else None
    return None if value is None else str(value)


def _ids(value: str | None) -> list[str]:
    return MESSAGE_ID.findall(value or "")


def _decode_part(part: Message, defects: list[str]) -> str:
    try:
        content = part.get_content()
        if isinstance(content, bytes):
            return content.decode("utf-8", errors="replace")
        return str(content)
    except (LookupError, UnicodeError, AssertionError, ValueError, KeyError) as exc:
        # Unknown or lying charset: fall back to UTF-8 then Latin-1 on the raw bytes.
        defects.append(f"{part.get_content_type()} part: {type(exc).__name__}, decoded leniently")
        payload = part.get_payload(decode=True) or b""
        try:
            return payload.decode("utf-8")
        except UnicodeDecodeError:
            return payload.decode("latin-1")


def _filename(part: Message) -> str | None:
    try:
        name = part.get_filename()
    except Exception:
        return None
    if not name:
        return None
    cleaned, _ = clean_line(name.replace("/", "_").replace("\\", "_"), 255)
    return cleaned or None


def _walk(message: Message):
    """Every leaf part, without descending into attached messages (those stay one attachment)."""
    if message.get_content_type() == "message/rfc822":
        yield message  # an attached (forwarded) message: one .eml attachment
    elif message.is_multipart():
        for sub in message.get_payload() or []:
            if isinstance(sub, Message):
                yield from _walk(sub)
    else:
        yield message


def _automation(message: Message, sender: str | None, envelope_sender: str | None) -> str | None:
    """Why this mail was sent by a machine (auto-reply, bounce, bulk), or None for a person."""
    auto_submitted = (message.get("Auto-Submitted") or "").strip().lower()
    if auto_submitted and auto_submitted != "no":
        return f"Auto-Submitted: {auto_submitted[:40]}"
    if message.get_content_type() == "multipart/report":
        return f"delivery report ({message.get_param('report-type') or 'unknown'})"
    if envelope_sender is not None and envelope_sender.strip() in ("", "<>"):
        return "empty envelope sender (bounce)"
    local = (sender or "").split("@")[0].lower()
    if local in ("mailer-daemon", "postmaster"):
        return f"sent by {local}"
    precedence = (message.get("Precedence") or "").strip().lower()
    if precedence in ("bulk", "junk", "list", "auto_reply"):
        return f"Precedence: {precedence}"
    for header in ("X-Autoreply", "X-Autorespond", "X-Auto-Reply"):
        if message.get(header):
            return f"{header} present"
    if message.get("List-Id") or message.get("List-Unsubscribe"):
        return "mailing list"
    return None


def parse_email(raw: bytes, *, envelope_sender: str | None = None) -> ParsedEmail:
    """Read `raw` (RFC 5322 bytes). Never raises: what cannot be read becomes a defect."""
    parsed = ParsedEmail()
    defects = parsed.defects
    try:
        message: EmailMessage = BytesParser(policy=policy.default).parsebytes(raw)
    except Exception as exc:  # the parser is lenient; this is a last resort
        defects.append(f"not parseable as email ({type(exc).__name__})")
        parsed.text_body = raw.decode("utf-8", errors="replace")
        parsed.summary = parsed.text_body[:2000]
        return parsed
    if message.defects:
        defects.extend(type(d).__name__ for d in message.defects[:10])
    if not raw.strip() or (not message.keys() and not message.get_payload()):
        defects.append("empty message")

    message_ids = _ids(_header(message, "Message-ID", defects))
    parsed.message_id = message_ids[0] if message_ids else None
    if parsed.message_id is None:
        defects.append("no Message-ID")
    parsed.subject, parsed.subject_cleaned = clean_line(_header(message, "Subject", defects))
    if parsed.subject_cleaned:
        defects.append("subject had invisible or direction-control characters (removed)")

    from_header = _header(message, "From", defects)
    if from_header:
        name, address = parseaddr(from_header)
        parsed.sender_address = address.strip().lower() or None
        parsed.sender_name = clean_line(name, 200)[0] or None
    if not parsed.sender_address or "@" not in parsed.sender_address:
        defects.append("no usable From address")
        parsed.sender_address = (envelope_sender or "").strip("<>").lower() or None
    for kind in ("to", "cc"):
        value = _header(message, kind, defects)
        if value:
            for name, address in getaddresses([value]):
                if address:
                    parsed.recipients.append(
                        {"kind": kind, "address": address.lower(), "name": clean_line(name, 200)[0]}
                    )
    in_reply_to = _ids(_header(message, "In-Reply-To", defects))
    parsed.in_reply_to = in_reply_to[0] if in_reply_to else None
    parsed.references = _ids(_header(message, "References", defects))[-50:]

    plain_part = html_part = None
    try:
        plain_part = message.get_body(preferencelist=("plain",))
        html_part = message.get_body(preferencelist=("html",))
    except Exception as exc:
        defects.append(f"body structure unreadable ({type(exc).__name__})")
    if plain_part is None and html_part is None and not message.is_multipart():
        # A single part without a text type (or a broken one): read it as text anyway.
        if message.get_content_maintype() in ("text", "application") or not message.keys():
            plain_part = message
    if plain_part is not None:
        parsed.text_body = _decode_part(plain_part, defects)
    if html_part is not None:
        raw_html = _decode_part(html_part, defects)
        parsed.html_body = sanitize_html(raw_html)
        if parsed.text_body is None:
            parsed.text_body = html_to_text(raw_html)
    if parsed.text_body is None:
        defects.append("no text or HTML body")

    for part in _walk(message):
        if part is plain_part or part is html_part:
            continue
        content_type = part.get_content_type()
        if part.get_content_maintype() == "multipart":
            continue
        try:
            if content_type == "message/rfc822":
                inner = part.get_payload(0) if part.is_multipart() else None
                data = inner.as_bytes() if inner is not None else (part.get_payload(decode=True) or b"")
            elif part.get_content_maintype() == "message":
                data = part.as_bytes()
            else:
                data = part.get_payload(decode=True) or b""
        except Exception as exc:
            defects.append(f"attachment {content_type} unreadable ({type(exc).__name__})")
            continue
        content_id = (part.get("Content-ID") or "").strip().strip("<>") or None
        disposition = (part.get_content_disposition() or "").lower()
        name = _filename(part)
        if content_type.startswith("text/") and not name and disposition != "attachment":
            continue  # an alternative body we did not choose (e.g. text/enriched)
        parsed.attachments.append(
            AttachmentDraft(
                filename=name or ("forwarded.eml" if content_type == "message/rfc822" else "attachment"),
                content_type=content_type,
                data=data,
                content_id=content_id,
                is_inline=disposition == "inline" or (content_id is not None and disposition != "attachment"),
            )
        )

    parsed.summary = new_text(parsed.text_body or "")[:5000]
    try:
        reason = _automation(message, parsed.sender_address, envelope_sender)
    except Exception as exc:
        reason = None
        defects.append(f"automation headers unreadable ({type(exc).__name__})")
    parsed.is_automated = reason is not None
    parsed.automated_reason = reason
    return parsed
