"""A slixmpp client for the Personal Eventing Protocol (XEP-0163) tests, driven by the test over its
stdin and stdout: it stays logged in while the test sends it commands, one JSON object a line, and
prints what it did and what it got, one JSON object a line.

Usage: pep_client.py --jid JID --password P [--host H] --port N [--notify NS,NS] [--no-presence]
                     [--deadline S]
  --notify       namespaces whose "NS+notify" the client adds to its disco#info features (XEP-0163
                 interest), on top of those slixmpp's plugins add (urn:xmpp:avatar:metadata,
                 http://jabber.org/protocol/nick, storage:bookmarks); its entity capabilities
                 (XEP-0115, slixmpp's xep_0115, sha-1) are computed from them.
  --no-presence  no initial presence (the test sends one with the command "presence").
Plugins: xep_0030, xep_0060, xep_0163, xep_0115, xep_0084, xep_0172, xep_0048 (private storage
method, XEP-0049: xep_0049), xep_0054; Debian's slixmpp 1.8.3 has no xep_0402, whose items are
read and published with xep_0060.

Output lines:
  {"event": "ready", "jid", "ver", "t"}              logged in, caps computed (after the initial
                                                     presence, unless --no-presence)
  {"event": "presence_sent", "ver", "t"}             an available presence left (caps in it)
  {"event": "pep", "frm", "to", "id", "node", "items": [{"id", "payload"}], "retracts": [ids],
   "t"}                                              a pubsub#event <items/> notification
                                                     (payloads in canonical form: canon())
  {"event": "message", "frm", "type", "body", "t"}  a message with a body
  {"event": "presence", "frm", "type", "photo", "t"} a presence (photo: XEP-0153's hash or null)
  {"event": "disco_query", "frm", "node", "t"}      a disco#info get with a node (a caps query)
  {"reply": N, "ok": true, ...} / {"reply": N, "ok": false, "error": {"condition", "type",
   "app": ["{ns}name", ...], "text"}}                the answer to command N
  {"event": "error", "what"}                         a failure outside a command
Commands (JSON, with "id": N and "cmd"):
  publish  node, payload (XML text), [item_id], [options {field: value}] -> item_id, t (when the
           result arrived)
  nick     nick (xep_0172.publish_nick)
  items    jid, node, [max_items], [ids] -> items [{"id", "payload"}]
  avatar   data (base64), type -> id (xep_0084: data, then metadata)
  vcard_set  fn, [photo (base64), photo_type] (xep_0054.publish_vcard)
  vcard_get  jid -> fn, photo (base64 or null), photo_type
  private_bookmarks_set  conferences [{"jid", "name", "autojoin", "nick", "password"}]
           (xep_0048.set_bookmarks, method xep_0049: <storage xmlns='storage:bookmarks'/>)
  private_bookmarks_get  -> conferences
  disco_info  jid, [node] -> features, identities
  presence    sends an available presence (with caps) -> t
  message     to, body
  quit        closes the stream and exits 0
Connects over plain TCP, STARTTLS disabled. Exits 2 when still running after the deadline.
PEP_DEBUG=1 logs slixmpp's debug output on stderr.
"""
import argparse
import asyncio
import base64
import logging
import os
import sys
import time

import slixmpp
from slixmpp.plugins.xep_0048 import Bookmarks
from slixmpp.plugins.xep_0054.stanza import VCardTemp
from slixmpp.stanza import Iq
from slixmpp.xmlstream import ET
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

from driven import Driven, emit, main as driven_main

PUBSUB = "http://jabber.org/protocol/pubsub"
EVENT = "http://jabber.org/protocol/pubsub#event"
DISCO_INFO = "http://jabber.org/protocol/disco#info"
VCARD_UPDATE = "vcard-temp:x:update"
IQ_TIMEOUT_S = 20

logging.basicConfig(
    level=logging.DEBUG if os.environ.get("PEP_DEBUG") else logging.WARNING,
    stream=sys.stderr,
    format="%(asctime)s %(levelname)s %(name)s %(message)s",
)


def parse_args():
    p = argparse.ArgumentParser(description="XEP-0163 test client")
    p.add_argument("--jid", required=True)
    p.add_argument("--password", required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--notify", default="", help="namespaces to add NS+notify for, comma-separated")
    p.add_argument("--no-presence", action="store_true")
    p.add_argument("--deadline", type=float, default=120)
    return p.parse_args()


def canon(el):
    """One text for an element however it was written: <{ns}name a='v' ...>text children</>,
    attributes sorted, text trimmed (tests/helpers/cluster_pep.ts's canon() writes the same)."""
    tag = el.tag if el.tag.startswith("{") else "{}" + el.tag
    attrs = "".join(f" {k}='{v}'" for k, v in sorted(el.attrib.items()))
    text = ((el.text or "") + "".join(child.tail or "" for child in el)).strip()
    return f"<{tag}{attrs}>{text}{''.join(canon(child) for child in el)}</>"


class PepClient(Driven):
    def __init__(self, args):
        super().__init__(args, slixmpp.ClientXMPP(args.jid, args.password))
        c = self.c
        for plugin in ("xep_0030", "xep_0004", "xep_0060", "xep_0163", "xep_0115", "xep_0084",
                       "xep_0172", "xep_0049", "xep_0048", "xep_0054"):
            c.register_plugin(plugin)
        self.interests = [n for n in args.notify.split(",") if n]
        c.register_handler(Callback("PEP event items", MatchXPath(
            f"{{jabber:client}}message/{{{EVENT}}}event/{{{EVENT}}}items"), self.on_event))
        c.register_handler(Callback("message with a body", MatchXPath(
            "{jabber:client}message/{jabber:client}body"), self.on_message))
        c.register_handler(Callback("disco#info query with a node", MatchXPath(
            f"{{jabber:client}}iq/{{{DISCO_INFO}}}query"), self.on_disco))
        c.add_event_handler("presence", self.on_presence)

    # ---- what arrives ----

    def on_event(self, msg):
        t = time.time()
        items_el = msg.xml.find(f"{{{EVENT}}}event/{{{EVENT}}}items")
        items = []
        for it in items_el.findall(f"{{{EVENT}}}item"):
            children = list(it)
            items.append({
                "id": it.get("id"),
                "payload": canon(children[0]) if children else None,
            })
        retracts = [r.get("id") for r in items_el.findall(f"{{{EVENT}}}retract")]
        emit(event="pep", frm=msg["from"].full, to=msg["to"].full, id=msg["id"],
             node=items_el.get("node"), items=items, retracts=retracts, t=t)

    def on_message(self, msg):
        emit(event="message", frm=msg["from"].full, type=msg["type"], body=msg["body"],
             t=time.time())

    def on_disco(self, iq):
        if iq["type"] != "get":
            return
        node = iq.xml.find(f"{{{DISCO_INFO}}}query").get("node")
        if node:
            emit(event="disco_query", frm=iq["from"].full, node=node, t=time.time())

    def on_presence(self, pres):
        photo = pres.xml.find(f"{{{VCARD_UPDATE}}}x/{{{VCARD_UPDATE}}}photo")
        emit(event="presence", frm=pres["from"].full, type=pres["type"],
             photo=None if photo is None else (photo.text or ""), t=time.time())

    # ---- what it does ----

    async def settle_caps(self):
        """Adds the interests, then recomputes the caps until the ver announced is the one of
        the features as they are (slixmpp's plugins schedule their own recomputations when they
        add theirs at session_bind)."""
        disco = self.c["xep_0030"]
        caps = self.c["xep_0115"]
        for ns in self.interests:
            disco.add_feature(f"{ns}+notify")
        for _ in range(20):
            await caps.update_caps(broadcast=False)
            info = await disco.get_info(None, None, local=True)
            if isinstance(info, Iq):
                info = info["disco_info"]
            want = caps.generate_verstring(info, caps.hash)
            await asyncio.sleep(0)
            if await caps.get_verstring() == want:
                return want
        raise RuntimeError("the caps ver did not settle")

    async def send_presence(self):
        ver = await self.c["xep_0115"].get_verstring()
        emit(event="presence_sent", ver=ver, t=time.time())
        self.c.send_presence()
        return ver

    async def command(self, cmd):
        c = self.c
        name = cmd["cmd"]
        if name == "publish":
            form = None
            if cmd.get("options"):
                form = c["xep_0004"].make_form(ftype="submit")
                form.add_field(var="FORM_TYPE", ftype="hidden",
                               value=f"{PUBSUB}#publish-options")
                for var, value in cmd["options"].items():
                    form.add_field(var=var, value=value)
            resp = await c["xep_0060"].publish(
                None, cmd["node"], id=cmd.get("item_id"),
                payload=ET.fromstring(cmd["payload"]), options=form, timeout=IQ_TIMEOUT_S)
            t = time.time()
            item = resp.xml.find(f"{{{PUBSUB}}}pubsub/{{{PUBSUB}}}publish/{{{PUBSUB}}}item")
            return {"item_id": None if item is None else item.get("id"), "t": t}
        if name == "nick":
            await c["xep_0172"].publish_nick(cmd["nick"], timeout=IQ_TIMEOUT_S)
            return {"t": time.time()}
        if name == "items":
            resp = await c["xep_0060"].get_items(
                cmd["jid"], cmd["node"], item_ids=cmd.get("ids"), max_items=cmd.get("max_items"),
                timeout=IQ_TIMEOUT_S)
            items_el = resp.xml.find(f"{{{PUBSUB}}}pubsub/{{{PUBSUB}}}items")
            items = []
            if items_el is not None:
                for it in items_el.findall(f"{{{PUBSUB}}}item"):
                    children = list(it)
                    items.append({
                        "id": it.get("id"),
                        "payload": canon(children[0]) if children else None,
                    })
            return {"items": items, "node": None if items_el is None else items_el.get("node")}
        if name == "avatar":
            data = base64.b64decode(cmd["data"])
            avatar = c["xep_0084"]
            await avatar.publish_avatar(data, timeout=IQ_TIMEOUT_S)
            aid = avatar.generate_id(data)
            await avatar.publish_avatar_metadata(
                {"id": aid, "type": cmd["type"], "bytes": len(data)}, timeout=IQ_TIMEOUT_S)
            return {"id": aid}
        if name == "vcard_set":
            vcard = VCardTemp()
            vcard["FN"] = cmd["fn"]
            if cmd.get("photo"):
                vcard["PHOTO"]["TYPE"] = cmd["photo_type"]
                vcard["PHOTO"]["BINVAL"] = base64.b64decode(cmd["photo"])
            await c["xep_0054"].publish_vcard(vcard, timeout=IQ_TIMEOUT_S)
            return {}
        if name == "vcard_get":
            iq = c.make_iq_get(ito=cmd["jid"])
            iq.enable("vcard_temp")
            resp = await iq.send(timeout=IQ_TIMEOUT_S)
            v = resp.xml.find("{vcard-temp}vCard")
            photo = None if v is None else v.find("{vcard-temp}PHOTO")
            binval = None if photo is None else photo.find("{vcard-temp}BINVAL")
            ptype = None if photo is None else photo.find("{vcard-temp}TYPE")
            return {
                "fn": None if v is None else v.findtext("{vcard-temp}FN"),
                # BINVAL may be folded over lines (XEP-0153): whitespace is not base64.
                "photo": None if binval is None else "".join((binval.text or "").split()),
                "photo_type": None if ptype is None else ptype.text,
            }
        if name == "private_bookmarks_set":
            storage = Bookmarks()
            for conf in cmd["conferences"]:
                storage.add_conference(conf["jid"], conf.get("nick"), name=conf.get("name"),
                                       autojoin=conf.get("autojoin"),
                                       password=conf.get("password"))
            await c["xep_0048"].set_bookmarks(storage, method="xep_0049", timeout=IQ_TIMEOUT_S)
            return {}
        if name == "private_bookmarks_get":
            resp = await c["xep_0048"].get_bookmarks(method="xep_0049", timeout=IQ_TIMEOUT_S)
            confs = []
            for conf in resp["private"]["bookmarks"]["conferences"]:
                confs.append({
                    "jid": conf["jid"],
                    "name": conf["name"] or None,
                    "autojoin": conf["autojoin"],
                    "nick": conf["nick"] or None,
                    "password": conf["password"] or None,
                })
            return {"conferences": confs}
        if name == "disco_info":
            resp = await c["xep_0030"].get_info(cmd["jid"], cmd.get("node"), local=False,
                                                timeout=IQ_TIMEOUT_S)
            info = resp["disco_info"]
            return {
                "features": list(info["features"]),
                "identities": [list(i) for i in info["identities"]],
            }
        if name == "presence":
            ver = await self.send_presence()
            return {"ver": ver}
        if name == "message":
            c.send_message(mto=cmd["to"], mbody=cmd["body"], mtype="chat")
            return {}
        raise ValueError(f"unknown command {name}")

    async def ready(self):
        ver = await self.settle_caps()
        if not self.args.no_presence:
            await self.send_presence()
        return {"jid": self.c.boundjid.full, "ver": ver, "t": time.time()}


def main():
    driven_main(PepClient(parse_args()))


if __name__ == "__main__":
    main()
