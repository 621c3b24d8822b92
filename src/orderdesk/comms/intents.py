"""What a customer wants, and what the agent can do about it: pure rules, no I/O.

`detect_intent` reads the subject and the new text of a message (quotes and
signature already stripped) against phrase rules in English, German and Spanish.
Each rule has a weight: the confidence of the best-matching intent is its strongest
rule's weight, raised a little by further matches and by a match in the subject,
and lowered when another intent matches almost as well (the message asks two
things). No rule matched: `other`. The rules are listed in docs/comms.md.

`suggest_action` turns an intent and an order's state into the sentence an agent
sees on the work item, using the order state machine for what is allowed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from orderdesk.comms.models import Intent
from orderdesk.orders.states import Action, HoldReason, OrderStatus, allowed_actions

STRONG, MEDIUM, WEAK = 0.9, 0.75, 0.55

W, C, A, R = Intent.WHERE_IS_MY_ORDER, Intent.CANCEL, Intent.CHANGE_ADDRESS, Intent.RETURN_REQUEST
# (intent, language, weight, alternatives). Patterns run on lower-cased text; the
# alternatives of one rule are joined with "|".
# fmt: off (a table reads better one rule per entry)
RULES: list[tuple[Intent, str, float, tuple[str, ...]]] = [
    # where is my order
    (W, "en", STRONG, (r"\bwhere(?:'s| is)\s+my\s+(?:order|parcel|package|delivery|shipment)",)),
    (
        W,
        "en",
        STRONG,
        (
            r"\b(?:has|have|hasn't|haven't|has not|have not)\s+(?:not\s+)?(?:yet\s+)?"
            r"(?:arrived|received|been delivered|shipped)",
        ),
    ),
    (
        W,
        "en",
        MEDIUM,
        (
            r"\bwhen\s+will\s+(?:it|my\s+\w+|the\s+\w+|i)\s+(?:arrive|be\s+delivered|ship|get|receive)",
            r"\btracking\s+(?:number|status|info|link)",
            r"\bstatus\s+of\s+my\s+order",
            r"\border\s+status",
        ),
    ),
    (W, "en", WEAK, (r"\bstill\s+waiting\b", r"\bany\s+(?:news|update)\b")),
    (
        W,
        "de",
        STRONG,
        (
            r"\bwo\s+(?:ist|bleibt)\s+meine?\s+(?:bestellung|lieferung|sendung|paket)",
            r"\bnoch\s+(?:nicht|immer\s+nicht|keine)\s+(?:angekommen|erhalten|geliefert|bekommen|da)",
        ),
    ),
    (
        W,
        "de",
        MEDIUM,
        (
            r"\bwann\s+(?:kommt|wird|erhalte|bekomme|ist)\b",
            r"\bsendungsverfolgung",
            r"\blieferstatus",
            r"\bsendungsnummer",
        ),
    ),
    (
        W,
        "es",
        STRONG,
        (
            r"\bd[óo]nde\s+est[áa]\s+mi\s+(?:pedido|paquete|env[íi]o)",
            r"\bno\s+(?:me\s+)?ha\s+llegado",
            r"\btodav[íi]a\s+no\s+(?:ha\s+)?llega",
        ),
    ),
    (
        W,
        "es",
        MEDIUM,
        (
            r"\bcu[áa]ndo\s+(?:llega|llegar[áa]|recibir[ée])",
            r"\bseguimiento",
            r"\bestado\s+de\s+mi\s+pedido",
        ),
    ),
    # cancel
    (
        C,
        "en",
        STRONG,
        (
            r"\bcancel(?:l?ing|l?ed)?\s+(?:my|the|this|our)\s+(?:order|purchase)",
            r"\bplease\s+cancel\b",
            r"\bwant\s+to\s+cancel\b",
            r"\bcancel\s+it\b",
        ),
    ),
    (
        C,
        "en",
        MEDIUM,
        (
            r"\bcancel(?:lation)?\b",
            r"\b(?:no\s+longer|don't|do\s+not)\s+(?:want|need)\s+(?:it|the\s+order|this\s+order)",
        ),
    ),
    (
        C,
        "de",
        STRONG,
        (
            r"\bstornier(?:en|ung|e|t)\b",
            r"\bbestellung\s+(?:zur[üu]ckziehen|widerrufen|annullieren)",
        ),
    ),
    (C, "de", MEDIUM, (r"\bm[öo]chte\s+(?:die|meine)\s+bestellung\s+nicht\s+mehr", r"\bwiderruf\b")),
    (C, "es", STRONG, (r"\b(?:cancelar|anular)\s+(?:mi|el|este)\s+pedido", r"\bquiero\s+cancelar")),
    (C, "es", MEDIUM, (r"\bcancelaci[óo]n\b", r"\bcancelar\b")),
    # change address
    (
        A,
        "en",
        STRONG,
        (
            r"\bchange\s+(?:my|the)\s+(?:delivery\s+|shipping\s+)?address",
            r"\bwrong\s+(?:delivery\s+|shipping\s+)?address\b",
            r"\bnew\s+(?:delivery\s+|shipping\s+)?address\b",
        ),
    ),
    (
        A,
        "en",
        MEDIUM,
        (
            r"\b(?:ship|send|deliver)\s+(?:it\s+)?to\s+(?:a\s+)?(?:different|another|my\s+new)\s+address",
            r"\bi(?:'ve| have)\s+moved\b",
            r"\baddress\s+(?:change|correction)",
        ),
    ),
    (
        A,
        "de",
        STRONG,
        (
            r"\b(?:liefer)?adresse\s+(?:[äa]ndern|korrigieren|berichtigen)",
            r"\bfalsche\s+(?:liefer)?adresse",
            r"\bneue\s+(?:liefer)?adresse",
        ),
    ),
    (A, "de", MEDIUM, (r"\badress[äa]nderung\b", r"\bumgezogen\b", r"\ban\s+eine\s+andere\s+adresse")),
    (
        A,
        "es",
        STRONG,
        (
            r"\bcambiar\s+(?:la\s+|mi\s+)?direcci[óo]n",
            r"\bdirecci[óo]n\s+(?:incorrecta|equivocada|err[óo]nea)",
            r"\bnueva\s+direcci[óo]n",
        ),
    ),
    (A, "es", MEDIUM, (r"\bme\s+he\s+mudado", r"\botra\s+direcci[óo]n")),
    # return request
    (
        R,
        "en",
        STRONG,
        (
            r"\breturn\s+(?:the|my|this|these|it|them|an?)\b",
            r"\bsend\s+(?:it|them|this)\s+back\b",
            r"\brequest\s+a\s+return\b",
        ),
    ),
    (R, "en", MEDIUM, (r"\brefund\b", r"\bexchange\b", r"\brma\b")),
    (
        R,
        "en",
        WEAK,
        (
            r"\b(?:doesn't|does not|don't|do not)\s+fit\b",
            r"\btoo\s+(?:small|big|large|tight)\b",
            r"\b(?:damaged|broken|defective|faulty)\b",
        ),
    ),
    (
        R,
        "de",
        STRONG,
        (
            r"\bzur[üu]ck(?:senden|schicken|geben)\b",
            r"\br[üu]cksendung\b",
            r"\bretoure\b",
            r"\bumtausch(?:en)?\b",
        ),
    ),
    (R, "de", MEDIUM, (r"\b(?:r[üu]ck)?erstattung\b", r"\bgeld\s+zur[üu]ck\b")),
    (
        R,
        "de",
        WEAK,
        (r"\bpasst\s+nicht\b", r"\bzu\s+(?:klein|gro[ßs])\b", r"\b(?:besch[äa]digt|defekt|kaputt)\b"),
    ),
    (
        R,
        "es",
        STRONG,
        (
            r"\bdevolver\b",
            r"\bdevoluci[óo]n\b",
            r"\bcambiar\s+(?:el|la)\s+(?:producto|talla|art[íi]culo)",
        ),
    ),
    (R, "es", MEDIUM, (r"\breembolso\b",)),
    (R, "es", WEAK, (r"\bno\s+me\s+(?:queda|sirve)\b", r"\b(?:da[ñn]ado|roto|defectuoso)\b")),
]
# fmt: on
COMPILED = [(intent, lang, weight, re.compile("|".join(parts))) for intent, lang, weight, parts in RULES]

# A few frequent words per language: enough to route the item to an agent who reads it.
LANGUAGE_WORDS = {
    "en": {"the", "my", "is", "and", "please", "order", "where", "thanks", "hello", "have", "not", "you"},
    "de": {
        "die",
        "der",
        "und",
        "ist",
        "meine",
        "bitte",
        "bestellung",
        "nicht",
        "ich",
        "danke",
        "hallo",
        "wo",
    },
    "es": {"el", "la", "mi", "es", "y", "por", "favor", "pedido", "no", "gracias", "hola", "que", "dónde"},
}


@dataclass(frozen=True, slots=True)
class DetectedIntent:
    intent: Intent
    confidence: float
    language: str | None
    # Which rules fired, for the agent (and the tests) to see why.
    matched: tuple[str, ...] = ()


def detect_language(text: str) -> str | None:
    words = re.findall(r"[a-záéíóúñäöüß]+", text.lower())
    if not words:
        return None
    scores = {lang: sum(1 for w in words if w in vocab) for lang, vocab in LANGUAGE_WORDS.items()}
    best = max(scores, key=lambda lang: scores[lang])
    return best if scores[best] > 0 else None


def detect_intent(subject: str, text: str) -> DetectedIntent:
    """The most likely intent of a message with a confidence in [0, 1]."""
    subject_l = (subject or "").lower()
    # A reply's subject carries the original topic ("Re: Your order has shipped"): weigh it less.
    subject_l = re.sub(r"^(?:\s*(?:re|aw|fwd?|wg|rv|sv)\s*:\s*)+", "", subject_l)
    body_l = (text or "").lower()[:5000]
    language = detect_language(f"{subject_l} {body_l}")
    scores: dict[Intent, float] = {}
    matched: dict[Intent, list[str]] = {}
    for intent, lang, weight, pattern in COMPILED:
        in_body = bool(pattern.search(body_l))
        in_subject = bool(pattern.search(subject_l))
        if not (in_body or in_subject):
            continue
        hits = matched.setdefault(intent, [])
        hits.append(f"{intent.value}/{lang}/{weight}")
        base = scores.get(intent)
        score = weight + (0.05 if in_subject else 0.0)
        scores[intent] = score if base is None else min(0.98, max(base, score) + 0.05)
    if not scores:
        return DetectedIntent(Intent.OTHER, 0.5 if body_l.strip() or subject_l.strip() else 0.2, language)
    ranked = sorted(scores.items(), key=lambda kv: kv[1], reverse=True)
    best, confidence = ranked[0]
    if len(ranked) > 1 and ranked[1][1] >= confidence - 0.1:
        confidence *= 0.7  # two requests at once: an agent should read it
    return DetectedIntent(best, round(min(confidence, 0.98), 2), language, tuple(matched[best]))


# ---------------------------------------------------------------- suggested actions

S = OrderStatus
NOT_YET_PACKED = frozenset({S.CAPTURED, S.AWAITING_VERIFICATION, S.VERIFIED, S.ALLOCATED, S.BACKORDERED})
SHIPPED_ON = frozenset({S.PARTIALLY_SHIPPED, S.SHIPPED, S.DELIVERED})


def _words(status: OrderStatus) -> str:
    return status.value.replace("_", " ")


@dataclass(frozen=True, slots=True)
class Suggestion:
    text: str
    # Safe to do without a person (the outbound side decides whether the tenant allows it).
    automatic_ok: bool = False


def suggest_action(
    intent: Intent,
    *,
    order_label: str | None,
    status: OrderStatus | None,
    holds: tuple[HoldReason, ...] = (),
    tracking: str | None = None,
) -> Suggestion:
    """What the agent should do for `intent` on an order in `status` (None: no order known)."""
    if order_label is None or status is None:
        return Suggestion("no order identified: find the order (ask the customer for the order number)")
    allowed = allowed_actions(status, holds)
    state = _words(status) + (
        f", on hold ({', '.join(h.value.replace('_', ' ') for h in holds)})" if holds else ""
    )
    if intent is Intent.WHERE_IS_MY_ORDER:
        if status in SHIPPED_ON:
            where = f" ({tracking})" if tracking else ""
            return Suggestion(
                f"answer with tracking for order {order_label}: {state}{where}", automatic_ok=True
            )
        if status is S.CANCELLED:
            return Suggestion(f"tell the customer order {order_label} was cancelled")
        return Suggestion(
            f"answer with status of order {order_label}: {state}, not shipped yet", automatic_ok=True
        )
    if intent is Intent.CANCEL:
        if Action.CANCEL in allowed and status in NOT_YET_PACKED:
            return Suggestion(f"cancel order {order_label}: allowed, not yet shipped ({state})")
        if Action.CANCEL in allowed:
            # The state machine still allows it, but goods are on the packing table: never automatic.
            return Suggestion(f"cancel order {order_label}: not allowed without the warehouse: {state}")
        if status in SHIPPED_ON:
            return Suggestion(f"cancel order {order_label}: not allowed: {state}; offer a return instead")
        return Suggestion(f"cancel order {order_label}: not allowed: {state}")
    if intent is Intent.CHANGE_ADDRESS:
        if status in NOT_YET_PACKED and not holds:
            return Suggestion(f"change the address of order {order_label}: allowed, not yet packed ({state})")
        if status in NOT_YET_PACKED or status is S.PICKING:
            return Suggestion(
                f"change the address of order {order_label}: check with the warehouse first: {state}"
            )
        return Suggestion(f"change the address of order {order_label}: not allowed: {state}")
    if intent is Intent.RETURN_REQUEST:
        if Action.REQUEST_RETURN in allowed:
            return Suggestion(f"open a return for order {order_label}: allowed, delivered")
        if status in NOT_YET_PACKED:
            return Suggestion(
                f"return for order {order_label}: not delivered yet ({state}); offer to cancel instead"
            )
        return Suggestion(f"return for order {order_label}: not allowed: {state}")
    return Suggestion(f"read and answer about order {order_label} ({state})")
