"""What the test-driven slixmpp clients share (pep_client.py, push_csi_client.py): JSON lines
out (emit), commands in on stdin answered by {"reply": id, "ok": ...}, the connect / wait for the
server / read commands / disconnect cycle, and main() with the deadline. A client subclasses
Driven: `c` is its slixmpp client, `command(cmd)` answers one command (a dict of results), and
`ready()` says when it is logged in (after the stream is negotiated), returning the "ready"
line's fields. The script imports this from its own directory."""
import asyncio
import json
import sys

from slixmpp.exceptions import IqError, IqTimeout

STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"


def emit(**fields):
    print(json.dumps(fields), flush=True)


def error_of(e):
    """An iq error as the tests read it: condition, type, application conditions ({ns}name)."""
    err = e.iq.xml.find("{jabber:client}error")
    app = []
    if err is not None:
        app = [c.tag for c in err if not c.tag.startswith("{%s}" % STANZAS)]
    return {"condition": e.condition, "type": e.etype, "app": app, "text": e.text}


class Driven:
    def __init__(self, args, c):
        self.args = args
        self.c = c

    async def command(self, cmd):
        raise NotImplementedError

    async def ready(self):
        """Waits for what the client needs once the session started; the "ready" fields."""
        return {}

    async def run_command(self, cmd):
        try:
            result = await self.command(cmd)
            emit(reply=cmd["id"], ok=True, **result)
        except IqError as e:
            emit(reply=cmd["id"], ok=False, error=error_of(e))
        except IqTimeout:
            emit(reply=cmd["id"], ok=False, error={"condition": "timeout"})
        except Exception as e:  # reported to the test, which fails with it
            emit(reply=cmd["id"], ok=False, error={"condition": "exception", "text": repr(e)})

    async def read_commands(self):
        loop = asyncio.get_event_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        tasks = set()
        while True:
            line = await reader.readline()
            if not line:
                return
            cmd = json.loads(line)
            if cmd["cmd"] == "quit":
                return
            task = asyncio.ensure_future(self.run_command(cmd))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

    async def run(self):
        c = self.c
        loop = asyncio.get_event_loop()
        started = loop.create_future()
        closed = loop.create_future()
        self.failed = loop.create_future()

        def fail(what):
            for f in (started, self.failed):
                if not f.done():
                    f.set_exception(RuntimeError(what))

        c.add_event_handler("session_start", lambda _: started.done() or started.set_result(None))
        c.add_event_handler("failed_auth", lambda _: fail("authentication failed"))
        c.add_event_handler("connection_failed", lambda e: fail(f"connection failed: {e}"))

        def disconnected(_):
            fail("disconnected")
            if not closed.done():
                closed.set_result(None)

        c.add_event_handler("disconnected", disconnected)
        c.connect(address=(self.args.host, self.args.port), disable_starttls=True)
        await started
        emit(event="ready", **await self.ready())
        commands = asyncio.ensure_future(self.read_commands())
        await asyncio.wait([commands, closed], return_when=asyncio.FIRST_COMPLETED)
        if closed.done():
            emit(event="error", what="disconnected by the server")
            return 1
        c.disconnect()
        await asyncio.wait_for(closed, 5)
        return 0


def main(client):
    """Runs `client` until it quits, fails or passes its --deadline; exits with its code."""
    import os
    try:
        code = client.c.loop.run_until_complete(
            asyncio.wait_for(client.run(), client.args.deadline))
    except asyncio.TimeoutError:
        emit(event="error", what="timeout", deadline=client.args.deadline)
        code = 2
    except Exception as e:
        emit(event="error", what=repr(e))
        code = 1
    sys.stdout.flush()
    os._exit(code)  # not sys.exit: slixmpp may leave tasks or a socket behind
