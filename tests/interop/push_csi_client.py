"""A slixmpp client for the push (XEP-0357) and client state indication (XEP-0352) tests across a
cluster (tests/interop/cluster_push_csi_test.ts), driven by the test over its stdin and stdout:
it stays logged in while the test sends it commands, one JSON object a line, and prints what it
did and what it got, one JSON object a line.

Usage: push_csi_client.py --jid JID --password P [--host H] --port N [--deadline S]
Plugins: xep_0030 (disco), xep_0004 (forms), xep_0085 (chat states), xep_0199 (ping, answered),
xep_0198 (stream management with resumption: "ready" waits for <enabled/>), xep_0352 (client
state indication: send_inactive/send_active once the server advertised the feature). Debian's
slixmpp 1.8.3 has no xep_0357 plugin: enable and disable are built here as XEP-0357 §5 words
them (<enable xmlns='urn:xmpp:push:0' jid node> with a publish-options data form made by
xep_0004, <disable jid [node]>), sent as iqs through slixmpp and awaited as any iq.

Output lines:
  {"event": "ready", "jid", "sm_id", "resumable", "csi", "t"}  logged in, stream management
                       enabled (sm_id: the resumption id), initial presence sent; csi: whether
                       the server advertised XEP-0352 (slixmpp's plugin enabled)
  {"event": "message", "frm", "type", "id", "body", "chat_state", "t"}  every message (body or
                       chat_state may be null)
  {"event": "presence", "frm", "type", "show", "status", "t"}  every presence
  {"reply": N, "ok": true, ...} / {"reply": N, "ok": false, "error": {"condition", "type",
   "text"}}          the answer to command N
  {"event": "error", "what"}  a failure outside a command
Commands (JSON, with "id": N and "cmd"):
  push_enable   jid, node, [options {field: value}]  (a publish-options form when options given)
  push_disable  jid, [node]
  disco_info    jid -> features
  message       to, body, [msg_id], [type (chat)]
  flood         to, bodies [..], [type (chat)]: one message per body, back to back
  chat_state    to, state (active, composing, paused, inactive, gone), no body
  presence      [status], [show]: an available presence
  inactive      <inactive/> (xep_0352), then a ping to the server, answered: the server has read
                the nonza before anything the test does next
  active        <active/> (xep_0352)
  ping          to -> an XEP-0199 ping answered (result or error)
  quit          closes the stream and exits 0
Connects over plain TCP, STARTTLS disabled. Exits 2 when still running after the deadline.
PUSH_CSI_DEBUG=1 logs slixmpp's debug output on stderr.
"""
import argparse
import asyncio
import logging
import os
import sys
import time

import slixmpp
from slixmpp.exceptions import IqError
from slixmpp.xmlstream import ET
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

from driven import Driven, emit, error_of, main as driven_main

PUSH = "urn:xmpp:push:0"
PUBLISH_OPTIONS = "http://jabber.org/protocol/pubsub#publish-options"
CHAT_STATES = "http://jabber.org/protocol/chatstates"
IQ_TIMEOUT_S = 20

logging.basicConfig(
    level=logging.DEBUG if os.environ.get("PUSH_CSI_DEBUG") else logging.WARNING,
    stream=sys.stderr,
    format="%(asctime)s %(levelname)s %(name)s %(message)s",
)


def parse_args():
    p = argparse.ArgumentParser(description="XEP-0357 / XEP-0352 test client")
    p.add_argument("--jid", required=True)
    p.add_argument("--password", required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--deadline", type=float, default=120)
    return p.parse_args()


class Client(Driven):
    def __init__(self, args):
        super().__init__(args, slixmpp.ClientXMPP(args.jid, args.password))
        c = self.c
        for plugin in ("xep_0030", "xep_0004", "xep_0085", "xep_0199", "xep_0198", "xep_0352"):
            c.register_plugin(plugin)
        c["xep_0198"].allow_resume = True
        # Every message, with a body or not (slixmpp's "message" event is for those with one).
        c.register_handler(Callback("every message", MatchXPath("{jabber:client}message"),
                                    self.on_message))
        c.add_event_handler("presence", self.on_presence)

    # ---- what arrives ----

    def on_message(self, msg):
        state = None
        for child in msg.xml:
            if child.tag.startswith("{%s}" % CHAT_STATES):
                state = child.tag.split("}", 1)[1]
        body = msg.xml.find("{jabber:client}body")
        emit(event="message", frm=msg["from"].full, type=msg["type"], id=msg["id"] or None,
             body=None if body is None else (body.text or ""), chat_state=state, t=time.time())

    def on_presence(self, pres):
        emit(event="presence", frm=pres["from"].full, type=pres["type"],
             show=pres.xml.findtext("{jabber:client}show"),
             status=pres.xml.findtext("{jabber:client}status"), t=time.time())

    # ---- what it does ----

    async def command(self, cmd):
        c = self.c
        name = cmd["cmd"]
        if name == "push_enable":
            enable = ET.Element(f"{{{PUSH}}}enable", jid=cmd["jid"], node=cmd["node"])
            if cmd.get("options"):
                form = c["xep_0004"].make_form(ftype="submit")
                form.add_field(var="FORM_TYPE", ftype="hidden", value=PUBLISH_OPTIONS)
                for var, value in cmd["options"].items():
                    form.add_field(var=var, value=value)
                enable.append(form.xml)
            iq = c.make_iq_set()
            iq.append(enable)
            await iq.send(timeout=IQ_TIMEOUT_S)
            return {}
        if name == "push_disable":
            attrs = {"jid": cmd["jid"]}
            if cmd.get("node"):
                attrs["node"] = cmd["node"]
            iq = c.make_iq_set()
            iq.append(ET.Element(f"{{{PUSH}}}disable", **attrs))
            await iq.send(timeout=IQ_TIMEOUT_S)
            return {}
        if name == "disco_info":
            resp = await c["xep_0030"].get_info(cmd["jid"], local=False, timeout=IQ_TIMEOUT_S)
            return {"features": list(resp["disco_info"]["features"])}
        if name == "message":
            msg = c.make_message(mto=cmd["to"], mbody=cmd["body"], mtype=cmd.get("type", "chat"))
            if cmd.get("msg_id"):
                msg["id"] = cmd["msg_id"]
            msg.send()
            return {"t": time.time()}
        if name == "flood":
            for body in cmd["bodies"]:
                c.send_message(mto=cmd["to"], mbody=body, mtype=cmd.get("type", "chat"))
            return {"t": time.time()}
        if name == "chat_state":
            msg = c.make_message(mto=cmd["to"], mtype="chat")
            msg["chat_state"] = cmd["state"]
            msg.send()
            return {}
        if name == "presence":
            c.send_presence(pstatus=cmd.get("status"), pshow=cmd.get("show"))
            return {}
        if name == "inactive":
            if not c["xep_0352"].enabled:
                raise RuntimeError("the server did not advertise urn:xmpp:csi:0")
            c["xep_0352"].send_inactive()
            await c["xep_0199"].ping(jid=c.boundjid.domain, timeout=IQ_TIMEOUT_S)
            return {"t": time.time()}
        if name == "active":
            c["xep_0352"].send_active()
            return {"t": time.time()}
        if name == "ping":
            try:
                await c["xep_0199"].send_ping(cmd["to"], timeout=IQ_TIMEOUT_S)
                return {"answer": "result"}
            except IqError as e:
                return {"answer": "error", "error": error_of(e)}
        raise ValueError(f"unknown command {name}")

    async def ready(self):
        c = self.c
        sm_enabled = asyncio.get_event_loop().create_future()
        c.add_event_handler("sm_enabled",
                            lambda _: sm_enabled.done() or sm_enabled.set_result(None))
        if c["xep_0198"].enabled_in:  # <enabled/> came before the session started
            sm_enabled.set_result(None)
        # Stream features after the bind: <enable resume/> answered, then the csi feature seen
        # (slixmpp handles it after sm's, once <enabled/> came).
        await asyncio.wait([sm_enabled, self.failed], timeout=10,
                           return_when=asyncio.FIRST_COMPLETED)
        if self.failed.done():
            self.failed.result()
        for _ in range(100):
            if c["xep_0352"].enabled:
                break
            await asyncio.sleep(0.02)
        c.send_presence()
        sm = c["xep_0198"]
        return {"jid": c.boundjid.full, "sm_id": sm.sm_id, "resumable": bool(sm.sm_id),
                "csi": c["xep_0352"].enabled, "t": time.time()}


def main():
    driven_main(Client(parse_args()))


if __name__ == "__main__":
    main()
