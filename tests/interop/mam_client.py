"""A slixmpp client for XEP-0313 message archive management tests: it sends messages to be archived,
pages through an archive with RSM, and reads the archive's metadata and preferences.

Usage: mam_client.py COMMAND --jid JID --password P [--host H] --port N [--starttls] [--deadline S]
  send      --to JID --count N [--prefix TEXT] [--sm]
            sends N chat messages with bodies "PREFIX i" (i from 0), each with its own origin-id;
            then waits until the server acknowledged them all (XEP-0198, with --sm) or answered a
            ping; prints {"sent": N, "origin_ids": [...]}.
  query     [--to ARCHIVE] [--with JID] [--page 50] [--text WORDS] [--start ISO] [--end ISO]
            [--before] [--flip]
            queries the account's archive (or ARCHIVE's, e.g. a room), --page results a page,
            following the pages forward (backward with --before) until <fin complete='true'/>;
            prints one line per result {"id", "from", "to", "body", "stanza_id", "origin_id",
            "stamp", "page"}, then {"done": true, "count", "pages", "complete"}.
  metadata  [--to ARCHIVE]  prints {"start": {"id", "timestamp"}|null, "end": ...|null}.
  prefs     [--default always|never|roster [--always J,J] [--never J,J]]
            gets (or sets, with --default) the preferences; prints {"default", "always", "never"}.
Connects over plain TCP (STARTTLS disabled, as the other interop clients) unless --starttls, which
negotiates TLS and accepts any certificate. Prints JSON objects one per line on stdout; exits 0 when
done, 1 on a failure (a line {"error": ...}), 2 when not done within the deadline.
MAM_DEBUG=1 logs slixmpp's debug output on stderr.
"""
import argparse
import asyncio
import json
import logging
import os
import ssl
import sys
import uuid

import slixmpp
from slixmpp.exceptions import IqError, IqTimeout
from slixmpp.xmlstream import ET
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

MAM = "urn:xmpp:mam:2"
SID = "urn:xmpp:sid:0"
FULLTEXT = "{urn:xmpp:fulltext:0}fulltext"
IQ_TIMEOUT_S = 30

logging.basicConfig(
    level=logging.DEBUG if os.environ.get("MAM_DEBUG") else logging.WARNING,
    stream=sys.stderr,
    format="%(asctime)s %(levelname)s %(name)s %(message)s",
)


class Failure(Exception):
    pass


def emit(**fields):
    print(json.dumps(fields), flush=True)


def jid_list(text):
    return [j.strip() for j in text.split(",") if j.strip()] if text else []


def parse_args():
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--jid", required=True)
    common.add_argument("--password", required=True)
    common.add_argument("--host", default="127.0.0.1")
    common.add_argument("--port", type=int, required=True)
    common.add_argument("--starttls", action="store_true", help="use STARTTLS, any certificate")
    common.add_argument("--deadline", type=float, default=60, help="seconds for the whole run")
    p = argparse.ArgumentParser(description="XEP-0313 test client")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("send", parents=[common])
    s.add_argument("--to", required=True)
    s.add_argument("--count", type=int, required=True)
    s.add_argument("--prefix", default="msg")
    s.add_argument("--sm", action="store_true", help="enable XEP-0198 and wait for the acks")
    q = sub.add_parser("query", parents=[common])
    q.add_argument("--to", help="the archive's JID (default: the account's)")
    q.add_argument("--with", dest="with_jid")
    q.add_argument("--page", type=int, default=50)
    q.add_argument("--text", help="the {urn:xmpp:fulltext:0}fulltext field")
    q.add_argument("--start")
    q.add_argument("--end")
    q.add_argument("--before", action="store_true", help="page backward from the end")
    q.add_argument("--flip", action="store_true", help="add <flip-page/>")
    m = sub.add_parser("metadata", parents=[common])
    m.add_argument("--to", help="the archive's JID (default: the account's)")
    f = sub.add_parser("prefs", parents=[common])
    f.add_argument("--default", choices=["always", "never", "roster"])
    f.add_argument("--always", type=jid_list, default=[])
    f.add_argument("--never", type=jid_list, default=[])
    return p.parse_args()


def make_client(args):
    c = slixmpp.ClientXMPP(args.jid, args.password)
    for plugin in ("xep_0030", "xep_0059", "xep_0199", "xep_0313", "xep_0359", "xep_0441"):
        c.register_plugin(plugin)
    if getattr(args, "sm", False):
        c.register_plugin("xep_0198")
        c["xep_0198"].allow_resume = False
    c.ssl_context.check_hostname = False
    c.ssl_context.verify_mode = ssl.CERT_NONE
    return c


async def send(c, args):
    origin_ids = []
    sm = c["xep_0198"] if args.sm else None
    want = (sm.seq if sm else 0) + args.count
    for i in range(args.count):
        msg = c.make_message(mto=args.to, mbody=f"{args.prefix} {i}", mtype="chat")
        msg["origin_id"]["id"] = origin_id = str(uuid.uuid4())
        origin_ids.append(origin_id)
        msg.send()
    if sm:
        # send() only queues: seq counts a stanza once the send loop has written it.
        asked = 0.0
        while sm.seq < want or sm.last_ack != sm.seq:
            if sm.seq >= want and c.loop.time() - asked > 1:
                sm.request_ack()
                asked = c.loop.time()
            await asyncio.sleep(0.02)
    else:
        await c["xep_0199"].ping(jid=c.boundjid.domain, timeout=IQ_TIMEOUT_S)
    emit(sent=args.count, origin_ids=origin_ids)


def child(el, tag):
    return None if el is None else el.find(tag)


def result_line(msg, archive, page):
    res = msg.xml.find(f"{{{MAM}}}result")
    fwd = child(res, "{urn:xmpp:forward:0}forwarded")
    inner = child(fwd, "{jabber:client}message")
    delay = child(fwd, "{urn:xmpp:delay}delay")
    stanza_ids = [] if inner is None else inner.findall(f"{{{SID}}}stanza-id")
    # The archive's own stanza-id if it put one there, else the first one.
    by_archive = [s for s in stanza_ids if s.get("by") == archive] or stanza_ids
    origin = child(inner, f"{{{SID}}}origin-id")
    body = child(inner, "{jabber:client}body")
    return {
        "id": res.get("id"),
        "from": None if inner is None else inner.get("from"),
        "to": None if inner is None else inner.get("to"),
        "body": None if body is None else body.text,
        "stanza_id": by_archive[0].get("id") if by_archive else None,
        "origin_id": None if origin is None else origin.get("id"),
        "stamp": None if delay is None else delay.get("stamp"),
        "page": page,
    }


async def query(c, args):
    archive = args.to or c.boundjid.bare
    collected = {}  # queryid -> the <message/>s carrying its results

    def on_result(msg):
        queryid = msg.xml.find(f"{{{MAM}}}result").get("queryid")
        if queryid in collected and msg["from"].bare in ("", archive):
            collected[queryid].append(msg)

    c.register_handler(Callback("MAM results", MatchXPath(
        f"{{jabber:client}}message/{{{MAM}}}result"), on_result))
    cursor, pages, count, complete = None, 0, 0, False
    while True:
        iq = c.make_iq_set(ito=args.to)
        q = iq["mam"]
        q["queryid"] = iq["id"]
        if args.with_jid:
            q["with"] = args.with_jid
        if args.start:
            q["start"] = args.start
        if args.end:
            q["end"] = args.end
        if args.text:
            q.set_custom_field(FULLTEXT, args.text)
        q["rsm"]["max"] = str(args.page)
        if args.before:
            q["rsm"]["before"] = cursor or True  # True: an empty <before/>, the last page
        elif cursor:
            q["rsm"]["after"] = cursor
        if args.flip:
            q.xml.append(ET.Element(f"{{{MAM}}}flip-page"))
        collected[iq["id"]] = []
        resp = await iq.send(timeout=IQ_TIMEOUT_S)
        pages += 1
        results = collected.pop(iq["id"])
        for msg in results:
            emit(**result_line(msg, archive, pages))
        count += len(results)
        fin = resp.xml.find(f"{{{MAM}}}fin")
        if fin is None:
            raise Failure("no <fin/> in the answer")
        complete = fin.get("complete") in ("true", "1")
        rsm = resp["mam_fin"]["rsm"]
        following = rsm["first"] if args.before else rsm["last"]
        if complete or not results or not following or following == cursor:
            break
        cursor = following
    emit(done=True, count=count, pages=pages, complete=complete)


async def metadata(c, args):
    resp = await c["xep_0313"].get_archive_metadata(jid=args.to, timeout=IQ_TIMEOUT_S)
    md = resp.xml.find(f"{{{MAM}}}metadata")
    if md is None:
        raise Failure("no <metadata/> in the answer")

    def end(name):
        el = md.find(f"{{{MAM}}}{name}")
        return None if el is None else {"id": el.get("id"), "timestamp": el.get("timestamp")}

    emit(start=end("start"), end=end("end"))


def prefs_of(el):
    def jids(name):
        return sorted(j.text for j in el.findall(f"{{{MAM}}}{name}/{{{MAM}}}jid"))

    return {"default": el.get("default"), "always": jids("always"), "never": jids("never")}


async def prefs(c, args):
    if args.default:
        # Lists, never None: None would leave <always/> or <never/> out of the request.
        resp = await c["xep_0441"].set_preferences(
            default=args.default, always=args.always, never=args.never, timeout=IQ_TIMEOUT_S)
        el = resp.xml.find(f"{{{MAM}}}prefs")
        if el is not None:
            emit(**prefs_of(el))
            return
    iq = c.make_iq_get()
    iq.enable("mam_prefs")
    resp = await iq.send(timeout=IQ_TIMEOUT_S)
    el = resp.xml.find(f"{{{MAM}}}prefs")
    if el is None:
        raise Failure("no <prefs/> in the answer")
    emit(**prefs_of(el))


async def run(c, args):
    loop = asyncio.get_event_loop()
    ready = loop.create_future()
    closed = loop.create_future()

    def fail(what):
        if not ready.done():
            ready.set_exception(Failure(what))

    # stream_negotiated: after every stream feature, <enable/> included (session_start comes
    # before the XEP-0198 feature is negotiated).
    c.add_event_handler("stream_negotiated", lambda _: ready.done() or ready.set_result(None))
    c.add_event_handler("failed_auth", lambda _: fail("authentication failed"))
    c.add_event_handler("connection_failed", lambda e: fail(f"connection failed: {e}"))
    c.add_event_handler("disconnected", lambda _: (fail("disconnected"),
                                                   closed.done() or closed.set_result(None)))
    c.connect(address=(args.host, args.port), disable_starttls=not args.starttls)
    await ready
    if getattr(args, "sm", False) and not c["xep_0198"].enabled_in:
        raise Failure("stream management not enabled")
    await {"send": send, "query": query, "metadata": metadata, "prefs": prefs}[args.command](c, args)
    if getattr(args, "sm", False):
        c["xep_0198"].send_ack()
    c.disconnect()
    await closed


def main():
    args = parse_args()
    c = make_client(args)
    try:
        c.loop.run_until_complete(asyncio.wait_for(run(c, args), args.deadline))
        code = 0
    except asyncio.TimeoutError:
        emit(error="timeout", deadline=args.deadline)
        code = 2
    except IqError as e:
        emit(error="iq error", condition=e.condition, text=e.text, type=e.etype)
        code = 1
    except IqTimeout:
        emit(error="iq timeout")
        code = 1
    except Failure as e:
        emit(error=str(e))
        code = 1
    sys.stdout.flush()
    os._exit(code)  # not sys.exit: slixmpp may leave tasks or a socket behind after a failure


if __name__ == "__main__":
    main()
