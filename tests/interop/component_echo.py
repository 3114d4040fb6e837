"""One instance of an external component (XEP-0114) with slixmpp's ComponentXMPP: it echoes every
message back to its sender with its own NAME as the body, and names itself in disco#info.

Usage: component_echo.py HOST PORT DOMAIN SECRET NAME
Prints one JSON line when connected ({"ready": NAME}), then one per message it receives
({"got": ID}), and runs until it is killed: the Deno test counts what reached it.
"""
import asyncio
import json
import sys

import slixmpp

host, port, domain, secret, name = sys.argv[1:6]


def say(obj):
    print(json.dumps(obj), flush=True)


component = slixmpp.ComponentXMPP(domain, secret, host, int(port))
component.register_plugin("xep_0030")
component["xep_0030"].add_identity(category="gateway", itype="echo", name=name, jid=None)


def on_message(msg):
    say({"got": msg["id"]})
    reply = component.make_message(mto=msg["from"], mfrom=msg["to"], mbody=name)
    reply["id"] = msg["id"]
    reply.send()


component.add_event_handler("message", on_message)
component.add_event_handler("session_start", lambda _: say({"ready": name}))
component.connect()
asyncio.get_event_loop().run_forever()
