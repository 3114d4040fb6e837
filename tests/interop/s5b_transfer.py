"""Two slixmpp clients send a file through the server's SOCKS5 Bytestreams proxy (XEP-0065).

Usage: s5b_transfer.py ADDRESS SENDER_JID RECEIVER_JID PASSWORD SIZE [RECEIVER_ADDRESS]
ADDRESS is PORT (on 127.0.0.1) or HOST:PORT; the receiver logs in at RECEIVER_ADDRESS when given
(another node of a cluster), else at ADDRESS. The sender is the requester (XEP-0065).
Prints one JSON line: the SHA-256 of what was sent and of what arrived, and the proxy used.
"""
import asyncio
import hashlib
import json
import os
import sys

import slixmpp

address, sender_jid, receiver_jid, password, size = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
receiver_address = sys.argv[6] if len(sys.argv) > 6 else address
data = os.urandom(size)
result = {"sent": hashlib.sha256(data).hexdigest()}
done = asyncio.Event()


def client(jid, address):
    host, _, port = address.rpartition(":")
    c = slixmpp.ClientXMPP(jid, password)
    c.register_plugin("xep_0030")
    c.register_plugin("xep_0065", {"auto_accept": True})
    c.connect(address=(host or "127.0.0.1", int(port)), disable_starttls=True)
    return c


receiver = client(receiver_jid, receiver_address)
received = bytearray()
ready = asyncio.Event()
receiver.add_event_handler("session_start", lambda _: (receiver.send_presence(), ready.set()))


def on_closed(_):
    result["received"] = hashlib.sha256(bytes(received)).hexdigest()
    result["bytes"] = len(received)
    done.set()


def on_data(chunk):
    received.extend(chunk)
    # SIZE known, the receiver is done once it has it all (whether the end of the stream came
    # first is the relay's tests' business).
    if len(received) >= size:
        on_closed(None)


receiver.add_event_handler("socks5_data", on_data)
receiver.add_event_handler("socks5_closed", on_closed)

sender = client(sender_jid, address)


async def send(_):
    sender.send_presence()
    await ready.wait()
    sock = await sender["xep_0065"].handshake(receiver.boundjid.full, timeout=10)
    result["proxies"] = [str(j) for j in sender["xep_0065"]._proxies]
    for i in range(0, len(data), 65536):
        await sock.write(data[i:i + 65536])  # waits while the proxy applies backpressure
    sock.transport.close()  # flushes what is buffered, then closes: the receiver sees the end


sender.add_event_handler("session_start", send)


async def main():
    try:
        await asyncio.wait_for(done.wait(), 60)
    except asyncio.TimeoutError:
        result["timeout"] = True  # what arrived so far tells where it stopped
        result["bytes"] = len(received)
    print(json.dumps(result), flush=True)


asyncio.get_event_loop().run_until_complete(main())
