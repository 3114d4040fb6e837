"""A slixmpp client with XEP-0198 stream management (resumption on), reconnecting and resuming
after every lost connection, driven by tests/helpers/sm_load.ts.

Usage: sm_client.py MODE JID PASSWORD FIRST RECONNECT PEER COUNT RATE
  FIRST, RECONNECT  HOST:PORT where it connects first, and where it connects after a lost
                    connection (plain TCP; authenticates with SCRAM, STARTTLS disabled).
  MODE receive      prints every chat message it gets; once it gets the one whose body is "end",
                    acknowledges everything (<a/>).
  MODE send         on a line "go" on stdin, sends COUNT chat messages numbered 1..COUNT at RATE
                    per second (odd numbers to PEER's bare JID, even ones to PEER, a full JID),
                    then one whose body is "end"; it keeps sending while disconnected (slixmpp
                    queues them until the session is resumed). Prints "acked" once the server has
                    acknowledged every one.
  In both modes it closes its stream on a line "quit" on stdin (or at its end), so that the test
  checks what the contact saw while the client is still online.
Prints one JSON object per line on stdout, each with an "event"; exits 0 after closing, 2 when
it did not finish in time. SM_DEBUG=1 logs slixmpp's debug output on stderr.

slixmpp 1.8.3's xep_0198 plugin gets resumption wrong on the client's side in ways no server can
make up for, so this script fixes them in its own process, as a correct client behaves (the test
is of the server); SM_SLIXMPP_UNPATCHED=1 runs the plugin as it is:
- it clears its queue of unacknowledged stanzas when it sends <resume/> (its out_sync filter
  treats Resume as Enable), so stanzas lost in flight before the cut are never resent;
- it resends the unacknowledged ones with send(), which, the session not being marked started
  yet, puts them behind the stanzas the application sent while disconnected: out of order;
- it raises session_resumed with the last resent stanza instead of <resumed/> (a loop variable
  shadows it).
"""
import asyncio
import json
import logging
import os
import sys
import time

import slixmpp
from slixmpp.plugins.xep_0198 import stanza as sm_stanza
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

mode, jid, password, first, reconnect, peer = sys.argv[1:7]
count, rate = int(sys.argv[7]), float(sys.argv[8])
DEADLINE_S = 60

logging.basicConfig(
    level=logging.DEBUG if os.environ.get("SM_DEBUG") else logging.WARNING,
    stream=sys.stderr,
    format="%(asctime)s %(levelname)s %(name)s %(message)s",
)


def emit(event, **fields):
    print(json.dumps({"event": event, "t": time.time(), **fields}), flush=True)


def address(text):
    host, port = text.rsplit(":", 1)
    return host, int(port)


c = slixmpp.ClientXMPP(jid, password)
c.register_plugin("xep_0198")
sm = c["xep_0198"]
sm.allow_resume = True

if not os.environ.get("SM_SLIXMPP_UNPATCHED"):
    upstream_outgoing = sm._handle_outgoing

    def outgoing(stanza):
        if isinstance(stanza, sm_stanza.Resume):
            # Keep the unacknowledged stanzas: <resumed h/> acknowledges some, the rest are resent.
            sm.enabled_out = True
            return stanza
        return upstream_outgoing(stanza)

    c.del_filter("out_sync", sm._handle_outgoing)
    c.add_filter("out_sync", outgoing)

    def resumed(el):
        c.features.add("stream_management")
        sm.enabled_in = True
        sm._handle_ack(el)
        # Straight to the send queue, unfiltered (already counted), ahead of what the application
        # sent while disconnected (queued until session_resumed marks the session started).
        for _, stanza in sm.unacked_queue:
            c.waiting_queue.put_nowait((stanza, False))
        c.event("session_resumed", el)
        c.end_session_on_disconnect = False

    c.remove_handler("Stream Management Resumed")
    c.register_handler(Callback("Stream Management Resumed",
                                MatchXPath(sm_stanza.Resumed.tag_name()), resumed, instream=True))

state = {"finishing": False, "connects": 0, "sessions": 0, "ready": False}
finished = asyncio.get_event_loop().create_future()


def finish(code):
    if not finished.done():
        finished.set_result(code)


def on_connected(_):
    state["connects"] += 1
    emit("connected", n=state["connects"])


def on_disconnected(reason):
    emit("disconnected", reason=str(reason))
    if state["finishing"]:
        finish(0)
        return
    if state["connects"] > 50:
        emit("error", what="too many reconnections")
        finish(1)
        return

    async def again():
        await asyncio.sleep(0)  # as slixmpp's own reconnect(): let the other handlers run first
        c.connect(address=address(reconnect), disable_starttls=True)

    asyncio.ensure_future(again())


def on_session_start(_):
    state["sessions"] += 1
    emit("session_start", jid=str(c.boundjid), n=state["sessions"])
    c.send_presence()


def on_stream_negotiated(_):
    # Features are done (SM enabled or not): the first time, the client is ready.
    if state["ready"]:
        return
    state["ready"] = True
    emit("ready", jid=str(c.boundjid), sm_enabled=sm.enabled_in, sm_id=sm.sm_id)


def on_sm_enabled(el):
    emit(
        "enabled",
        id=el["id"],
        resume=el.xml.get("resume"),
        max=el.xml.get("max"),
        location=el.xml.get("location"),
    )


def on_resumed(el):
    # Unpatched, `el` is the last stanza resent, not <resumed/> (see above).
    emit("resumed", h=el.xml.get("h"), previd=el.xml.get("previd"), jid=str(c.boundjid),
         handled=sm.handled, resent=len(sm.unacked_queue))


def on_sm_failed(el):
    emit("sm_failed", xml=str(el))


def on_message(msg):
    if msg["type"] not in ("chat", "normal") or not msg["body"]:
        return
    emit("got", body=msg["body"], frm=str(msg["from"]),
         delayed=msg.xml.find("{urn:xmpp:delay}delay") is not None)
    if mode == "receive" and msg["body"] == "end":
        sm.send_ack()
        emit("finished", handled=sm.handled)


def close():
    if state["finishing"]:
        return
    state["finishing"] = True
    if c.transport is None:
        finish(0)
        return
    sm.send_ack()
    emit("closing", handled=sm.handled, seq=sm.seq, last_ack=sm.last_ack)
    c.disconnect()


async def commands():
    """Reads the test's commands on stdin: "go" (send mode), "quit"; end of input quits."""
    loop = asyncio.get_event_loop()
    while True:
        line = (await loop.run_in_executor(None, sys.stdin.readline)).strip()
        if line == "go" and mode == "send":
            asyncio.ensure_future(send_all())
        elif line == "quit" or line == "":
            close()
            return
        else:
            emit("error", what="unknown command", got=line)


async def send_all():
    bare = slixmpp.JID(peer).bare
    start = time.monotonic()
    for i in range(1, count + 1):
        delay = start + (i - 1) / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)  # pacing at RATE, not waiting for anything
        c.send_message(mto=bare if i % 2 else peer, mbody=str(i), mtype="chat")
        emit("sent", n=i, connected=c.transport is not None)
    c.send_message(mto=peer, mbody="end", mtype="chat")
    emit("sent_all", seq=sm.seq)
    # Done when every stanza has gone through the SM filter (none still queued while
    # disconnected) and the server acknowledged as many as were counted.
    want = count + 1
    asked = 0.0
    while not (sm.seq >= want and sm.last_ack == sm.seq and c.transport is not None):
        now = time.monotonic()
        if c.transport is not None and sm.enabled_in and now - asked > 1:
            sm.request_ack()
            asked = now
        await asyncio.sleep(0.02)
    emit("acked", seq=sm.seq, last_ack=sm.last_ack)


c.add_event_handler("connected", on_connected)
c.add_event_handler("disconnected", on_disconnected)
c.add_event_handler("session_start", on_session_start)
c.add_event_handler("stream_negotiated", on_stream_negotiated)
c.add_event_handler("sm_enabled", on_sm_enabled)
c.add_event_handler("session_resumed", on_resumed)
c.add_event_handler("sm_failed", on_sm_failed)
c.add_event_handler("message", on_message)
c.add_event_handler("failed_auth", lambda _: (emit("error", what="authentication failed"), finish(1)))

if mode not in ("send", "receive"):
    sys.exit(f"unknown mode {mode}")
asyncio.ensure_future(commands())

c.connect(address=address(first), disable_starttls=True)


async def main():
    try:
        return await asyncio.wait_for(finished, DEADLINE_S)
    except asyncio.TimeoutError:
        emit("timeout", seq=sm.seq, last_ack=sm.last_ack, handled=sm.handled,
             unacked=len(sm.unacked_queue))
        return 2


code = asyncio.get_event_loop().run_until_complete(main())
sys.stdout.flush()
os._exit(code)  # not sys.exit: the thread reading stdin would keep the process alive
