"""The data codings of SMPP 3.4 (data_coding) and the GSM 03.38 default alphabet.

On SMPP, data_coding 0 carries GSM 03.38 unpacked: one septet per octet, a character of
the extension table as the escape 0x1B and its code (two septets on the air)."""
from __future__ import annotations

# GSM 03.38 default alphabet, codes 0x00..0x7F (0x1B is the escape to the extension table).
GSM_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
assert len(GSM_BASIC) == 128
ESCAPE = 0x1B
# The extension table: escape, then this code.
GSM_EXTENSION = {"\f": 0x0A, "^": 0x14, "{": 0x28, "}": 0x29, "\\": 0x2F, "[": 0x3C, "~": 0x3D,
                 "]": 0x3E, "|": 0x40, "€": 0x65}
_BASIC_CODE = {ch: code for code, ch in enumerate(GSM_BASIC) if code != ESCAPE}
_EXTENDED_CHAR = {code: ch for ch, code in GSM_EXTENSION.items()}
# Octet (as its latin-1 character) -> GSM character, for a text without escapes: one C call.
_GSM_TRANSLATE = str.maketrans({chr(code): ch for code, ch in enumerate(GSM_BASIC)}
                               | {chr(b): "?" for b in range(0x80, 0x100)})

# The codes whose GSM character is the ASCII one (letters, digits, most punctuation): a
# text of these only reads as its octets do (one C call to tell).
_AS_ASCII = bytes(code for code, ch in enumerate(GSM_BASIC) if ch == chr(code) and code != ESCAPE)

GSM, IA5, LATIN1, UCS2, BINARY = "GSM", "IA5", "LATIN1", "UCS2", "BINARY"
#: data_coding -> the encoding its octets are in. 0xF0..0xF3: GSM message classes in the
#: default alphabet, 0xF4..0xF7 in 8-bit data. Other values (national codings) are octets.
ENCODINGS = {0: GSM, 1: IA5, 2: BINARY, 3: LATIN1, 4: BINARY, 8: UCS2,
             **{dc: GSM for dc in range(0xF0, 0xF4)}, **{dc: BINARY for dc in range(0xF4, 0xF8)}}
#: data_coding -> a table (``bytes.translate``) keeping each octet that is a printable ASCII
#: character reading as itself in that coding and changing any other: a receipt's text the
#: table leaves as it is is its octets as they are, with no decoding (one C call to tell).
AS_PRINTABLE_ASCII = {
    dc: bytes(b if 0x20 <= b < 0x7F and (enc != GSM or bytes((b,)) in _AS_ASCII) else b ^ 1 for b in range(256))
    for dc, enc in ENCODINGS.items() if enc in (GSM, IA5, LATIN1)}
#: The data_coding a text is sent in for each encoding a user may ask for.
DATA_CODING = {GSM: 0, IA5: 1, LATIN1: 3, UCS2: 8, BINARY: 4}


class UnencodableText(ValueError):
    """A text has a character its requested data_coding cannot carry."""


def encoding_of(data_coding: int) -> str:
    return ENCODINGS.get(data_coding, BINARY)


def gsm_septets(text: str) -> int | None:
    """Septets of a text in the GSM 03.38 alphabet (extension characters count two), or
    None when a character is in neither table."""
    n = 0
    for ch in text:
        if ch in _BASIC_CODE:
            n += 1
        elif ch in GSM_EXTENSION:
            n += 2
        else:
            return None
    return n


def encode(text: str, data_coding: int) -> bytes:
    """The short_message octets of a text in data_coding (binary codings take none: a
    binary payload is octets already)."""
    enc = encoding_of(data_coding)
    try:
        if enc == GSM:
            out = bytearray()
            for ch in text:
                code = _BASIC_CODE.get(ch)
                if code is not None:
                    out.append(code)
                elif ch in GSM_EXTENSION:
                    out += bytes((ESCAPE, GSM_EXTENSION[ch]))
                else:
                    raise UnencodableText(f"{ch!r} is not in the GSM 03.38 alphabet (data_coding 0)")
            return bytes(out)
        if enc == IA5:
            return text.encode("ascii")
        if enc == LATIN1:
            return text.encode("latin-1")
        if enc == UCS2:
            return text.encode("utf-16-be")
    except UnicodeEncodeError as err:
        raise UnencodableText(f"{text[err.start]!r} cannot be sent with data_coding {data_coding}") from None
    raise UnencodableText(f"data_coding {data_coding} is binary: it carries octets, not text")


def decode(octets: bytes, data_coding: int) -> str:
    """The text of short_message octets, for receipts and reassembly: lenient, as a
    handset is (an octet a coding cannot carry reads as '?')."""
    enc = encoding_of(data_coding)
    if enc == GSM and not octets.translate(None, _AS_ASCII):
        return octets.decode("ascii")
    if enc == GSM and ESCAPE not in octets:
        return octets.decode("latin-1").translate(_GSM_TRANSLATE)
    if enc == GSM:
        out = []
        escaped = False
        for b in octets:
            if escaped:
                escaped = False
                # An unknown extension code reads as its basic character (GSM 03.38).
                out.append(_EXTENDED_CHAR.get(b) or (GSM_BASIC[b] if b < 0x80 and b != ESCAPE else "?"))
            elif b == ESCAPE:
                escaped = True
            else:
                out.append(GSM_BASIC[b] if b < 0x80 else "?")
        return "".join(out)
    if enc == IA5:
        return octets.decode("ascii", "replace").replace("\ufffd", "?")
    if enc == UCS2:
        return octets[:len(octets) & ~1].decode("utf-16-be", "replace").replace("\ufffd", "?")
    return octets.decode("latin-1")
