"""``hlrsmpp segments TEXT``: how many SMS a text is, and what is left in the last one,
offline (the same count as GET /api/v1/sms/segments and the server's charge)."""
from __future__ import annotations

import json

from ..sms import UnencodableText, count_text, count_view
from . import ToolError, command


def run(args) -> int:
    try:
        view = count_view(count_text(args.text, args.data_coding))
    except UnencodableText as err:
        raise ToolError(str(err), 2) from None
    if args.json:
        print(json.dumps(view))
        return 0
    print(f"encoding:   {view['encoding']} (data_coding {view['data_coding']})")
    print(f"characters: {view['characters']} ({view['units']} {view['unit']})")
    print(f"segments:   {view['segments']} ({view['per_segment']} {view['unit']} each)")
    print(f"left:       {view['left']} {view['unit']} in the last segment")
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("segments", help="count the SMS segments of a text (GSM 160/153, UCS2 70/67, 8-bit 140/134)",
                       description="How many SMS a text is sent as, and the characters left in the last one. "
                                   "Without --data-coding: GSM 03.38 when every character is in its alphabet, "
                                   "else UCS2. See docs/sms.md.")
    p.add_argument("text", metavar="TEXT", help="the message (with a binary --data-coding, 2 or 4: its octets in hex)")
    p.add_argument("--data-coding", type=int, metavar="N",
                   help="0 GSM 03.38, 1 IA5, 3 Latin-1, 8 UCS2, 2 or 4 binary (default: 0 or 8, as the text needs)")
    p.add_argument("--json", action="store_true", help="one JSON object, as the HTTP API answers")
    p.set_defaults(func=command("segments", run))
