"""A slixmpp client for the HTTP File Upload (XEP-0363) tests: logs in, does one thing, prints what
came of it as one JSON object a line, and exits.

Usage: upload_client.py --jid JID --password P [--host H] --port N [--deadline S] ACTION ...
  send FILE --to JID... [--type T] finds the upload service (disco#items, then disco#info for the
                                  identity store/file: discover()), uploads FILE with slixmpp's
                                  xep_0363
                                  (upload_file: slot request, then an aiohttp PUT with the slot's
                                  headers), and sends the GET URL to each JID as a message body and an
                                  out-of-band URL (XEP-0066), as Conversations does
                                  -> {"event": "sent", "url", "max_file_size"}
  receive --base URL              waits for a message with an out-of-band URL, downloads it with
                                  aiohttp from the same path under URL (the http listener of the
                                  node it logged in to: what a load balancer in front of the
                                  cluster does), hashing it as it comes
                                  -> {"event": "received", "url", "status", "sha256", "bytes",
                                      "content_type"}
Errors: {"event": "error", "what"}; exits 2 when still running after the deadline.
"""
import argparse
import asyncio
import hashlib
import json
import sys
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import slixmpp
from slixmpp.plugins.xep_0363.http_upload import FileUploadError

OOB = "jabber:x:oob"


def emit(**fields):
    print(json.dumps(fields), flush=True)


def parse_args():
    p = argparse.ArgumentParser(description="XEP-0363 test client")
    p.add_argument("--jid", required=True)
    p.add_argument("--password", required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--deadline", type=float, default=60)
    sub = p.add_subparsers(dest="action", required=True)
    send = sub.add_parser("send")
    send.add_argument("file")
    send.add_argument("--to", required=True, nargs="+")
    send.add_argument("--type")
    receive = sub.add_parser("receive")
    receive.add_argument("--base", required=True)
    return p.parse_args()


async def download(url, base):
    """GET of `url`'s path under `base`, hashed as it arrives."""
    b, u = urlsplit(base), urlsplit(url)
    here = urlunsplit((b.scheme, b.netloc, u.path, u.query, ""))
    h = hashlib.sha256()
    n = 0
    async with aiohttp.ClientSession() as session:
        async with session.get(here) as res:
            async for chunk in res.content.iter_chunked(1 << 16):
                h.update(chunk)
                n += len(chunk)
            return {"url": here, "status": res.status, "sha256": h.hexdigest(), "bytes": n,
                    "content_type": res.headers.get("Content-Type")}


class UploadClient(slixmpp.ClientXMPP):
    def __init__(self, args):
        super().__init__(args.jid, args.password)
        self.args = args
        for plugin in ("xep_0030", "xep_0128", "xep_0363", "xep_0066"):
            self.register_plugin(plugin)
        self.done = asyncio.get_event_loop().create_future()
        self.add_event_handler("session_start", self.on_start)
        self.add_event_handler("message", self.on_message)
        self.add_event_handler("failed_auth", lambda _: self.finish("authentication failed"))

    def finish(self, error=None):
        if error:
            emit(event="error", what=error)
        if not self.done.done():
            self.done.set_result(error is None)

    async def on_start(self, _):
        self.send_presence()
        if self.args.action != "send":
            emit(event="ready")
            return
        try:
            upload = self["xep_0363"]
            await self.discover(upload)
            url = await upload.upload_file(self.args.file, content_type=self.args.type, timeout=30)
            for to in self.args.to:
                msg = self.make_message(mto=to, mbody=url, mtype="chat")
                msg["oob"]["url"] = url
                msg.send()
            emit(event="sent", url=url, max_file_size=str(upload.max_file_size))
            self.finish()
        except FileUploadError as e:
            self.finish(f"upload failed: {e}")
        except Exception as e:  # noqa: BLE001 - reported to the test, which fails
            self.finish(f"upload failed: {type(e).__name__}: {e}")

    async def discover(self, upload):
        """What xep_0363's find_upload_service does (disco#items on our domain, disco#info on
        each item: the identity store/file and the upload feature, max-file-size from the
        form): slixmpp 1.8.3's get_info_from_domain hands coroutines to asyncio.wait, which
        Python 3.11 refuses, so the plugin is given the service and its limit found the same way,
        and upload_file does the rest (slot request, PUT with the slot's headers)."""
        items = await self["xep_0030"].get_items(jid=self.boundjid.domain, timeout=10)
        for jid, _node, _name in items["disco_items"]["items"]:
            info = (await self["xep_0030"].get_info(jid=jid, timeout=10))["disco_info"]
            if ("store", "file") not in [(i[0], i[1]) for i in info["identities"]]:
                continue
            if "urn:xmpp:http:upload:0" not in info["features"]:
                continue
            upload.upload_service = jid
            for form in info.iterables:
                values = form["values"]
                if values.get("FORM_TYPE") == ["urn:xmpp:http:upload:0"]:
                    upload.max_file_size = int(values["max-file-size"])
            return
        raise RuntimeError("no upload service in disco#items")

    async def on_message(self, msg):
        if self.args.action != "receive" or not msg["oob"]["url"]:
            return
        try:
            got = await download(msg["oob"]["url"], self.args.base)
            emit(event="received", **got)
            self.finish()
        except Exception as e:  # noqa: BLE001 - reported to the test, which fails
            self.finish(f"download failed: {type(e).__name__}: {e}")


async def main():
    args = parse_args()
    c = UploadClient(args)
    c.connect(address=(args.host, args.port), disable_starttls=True)
    try:
        ok = await asyncio.wait_for(c.done, args.deadline)
    except asyncio.TimeoutError:
        emit(event="error", what="deadline")
        sys.exit(2)
    c.disconnect()
    await asyncio.sleep(0.1)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    asyncio.run(main())
