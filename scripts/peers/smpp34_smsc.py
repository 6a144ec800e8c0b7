#!/usr/bin/env python3
"""An SMSC nobody on this project wrote: the PyPI package smpp34 in server mode, for the interop
tests (tests/interop.rs).

It acknowledges every submit_sm with a decimal message id, sends a delivery receipt (TLVs and
text form) for each one that asks for it, and records every submit_sm to --out (JSON array):
the fields exactly as smpp34 parsed them, the UDH and SAR information, and the text decoded here
with Python's own UTF-16 codec (UCS-2) or the GSM 03.38 table below, so the gateway's encoder is
checked against decoders it does not share.

Usage: smpp34_smsc.py --port 2775 --out received.json
"""

import argparse
import asyncio
import json
import os
import signal
import sys

import smpp34

# GSM 03.38 default alphabet (index = septet) and extension table, from the 3GPP TS 23.038 tables.
GSM_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM_EXT = {0x0A: "\f", 0x14: "^", 0x28: "{", 0x29: "}", 0x2F: "\\", 0x3C: "[", 0x3D: "~",
           0x3E: "]", 0x40: "|", 0x65: "€"}


def decode_gsm(data: bytes) -> str:
    out, i = [], 0
    while i < len(data):
        if data[i] == 0x1B and i + 1 < len(data):
            out.append(GSM_EXT.get(data[i + 1], GSM_BASIC[data[i + 1] & 0x7F]))
            i += 2
        else:
            out.append(GSM_BASIC[data[i] & 0x7F])
            i += 1
    return "".join(out)


def split_udh(sm: bytes):
    """(concat info or None, payload) for a short_message starting with a UDH."""
    udhl = sm[0]
    ies, payload = sm[1:1 + udhl], sm[1 + udhl:]
    concat, i = None, 0
    while i + 2 <= len(ies):
        iei, length = ies[i], ies[i + 1]
        data = ies[i + 2:i + 2 + length]
        if iei == 0x00 and length == 3:
            concat = {"reference": data[0], "total": data[1], "sequence": data[2]}
        elif iei == 0x08 and length == 4:
            concat = {"reference": (data[0] << 8) | data[1], "total": data[2], "sequence": data[3]}
        i += 2 + length
    return concat, payload


def record(ev, message_id: str) -> dict:
    sm = bytes(ev.short_message)
    tlvs = {t.tag: bytes(t.value) for t in ev.tlvs}
    if not sm and smpp34.TLV_MESSAGE_PAYLOAD in tlvs:
        sm = tlvs[smpp34.TLV_MESSAGE_PAYLOAD]
    concat = None
    if ev.esm_class & 0x40:
        concat, sm = split_udh(sm)
    elif smpp34.TLV_SAR_MSG_REF_NUM in tlvs:
        concat = {
            "reference": int.from_bytes(tlvs[smpp34.TLV_SAR_MSG_REF_NUM], "big"),
            "total": tlvs[smpp34.TLV_SAR_TOTAL_SEGMENTS][0],
            "sequence": tlvs[smpp34.TLV_SAR_SEGMENT_SEQNUM][0],
        }
    if ev.data_coding == 8:
        text = sm.decode("utf-16-be")
    elif ev.data_coding == 0:
        text = decode_gsm(sm)
    else:
        text = None
    return {
        "messageId": message_id,
        "source": ev.source_addr,
        "sourceTon": ev.source_addr_ton,
        "sourceNpi": ev.source_addr_npi,
        "destination": ev.destination_addr,
        "destTon": ev.dest_addr_ton,
        "destNpi": ev.dest_addr_npi,
        "esmClass": ev.esm_class,
        "dataCoding": ev.data_coding,
        "registeredDelivery": ev.registered_delivery,
        "text": text,
        "concat": concat,
    }


async def receipt(esme, ev, message_id: str) -> None:
    await asyncio.sleep(0.02)
    text = (f"id:{message_id} sub:001 dlvrd:001 submit date:2601011200 "
            f"done date:2601011201 stat:DELIVRD err:000 text:")
    await esme.deliver_sm(
        ev.source_addr,
        text.encode("ascii"),
        source_addr=ev.destination_addr,
        esm_class=0x04,
        tlvs=[
            smpp34.Tlv(smpp34.TLV_RECEIPTED_MESSAGE_ID, message_id.encode("ascii") + b"\0"),
            smpp34.Tlv(smpp34.TLV_MESSAGE_STATE, bytes([2])),
        ],
    )


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=2775)
    parser.add_argument("--out", default="smpp34-smsc.json")
    args = parser.parse_args()

    received = []

    def save() -> None:
        with open(args.out + ".tmp", "w", encoding="utf-8") as f:
            json.dump(received, f, ensure_ascii=False, indent=1)
        os.replace(args.out + ".tmp", args.out)

    server = smpp34.Server("127.0.0.1", args.port, system_id="smpp34-smsc")
    await server.start()
    save()
    print("READY", flush=True)
    esmes, tasks, number = {}, set(), 0
    while True:
        ev = await server.next()
        if isinstance(ev, smpp34.Esme):
            esmes[ev.session_id] = ev
        elif isinstance(ev, smpp34.SubmitSmEvent):
            number += 1
            message_id = str(number)
            received.append(record(ev, message_id))
            save()
            ev.accept(message_id)
            esme = esmes.get(ev.session_id)
            if ev.registered_delivery & 0x01 and esme is not None:
                task = asyncio.create_task(receipt(esme, ev, message_id))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
        elif isinstance(ev, smpp34.Unbound):
            esmes.pop(ev.session_id, None)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    asyncio.run(main())
