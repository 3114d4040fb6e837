"""Two slixmpp clients use a Parley MUC room through slixmpp's XEP-0045 plugin.

Usage: muc_session.py PORT OWNER_JID GUEST_JID PASSWORD ROOM
Prints one JSON line with what each step observed; the Deno test checks it.
"""
import asyncio
import json
import sys

import slixmpp
import slixmpp.exceptions

port, owner_jid, guest_jid, password, room = sys.argv[1:6]
locked_room = "locked-" + room
club_room = "club-" + room
result = {}
USER = "http://jabber.org/protocol/muc#user"


def client(jid):
    c = slixmpp.ClientXMPP(jid, password)
    for p in ("xep_0030", "xep_0045", "xep_0004", "xep_0199"):
        c.register_plugin(p)
    c.connect(address=("127.0.0.1", int(port)), disable_starttls=True)
    return c


owner = client(owner_jid)
guest = client(guest_jid)
started = {"owner": asyncio.Event(), "guest": asyncio.Event()}
owner.add_event_handler("session_start", lambda _: (owner.send_presence(), started["owner"].set()))
guest.add_event_handler("session_start", lambda _: (guest.send_presence(), started["guest"].set()))


def waiter(c, event, pred=lambda _: True):
    fut = asyncio.get_running_loop().create_future()

    def handler(stanza):
        if not fut.done() and pred(stanza):
            fut.set_result(stanza)

    c.add_event_handler(event, handler)
    return fut


async def refused(muc, room_jid, **kwargs):
    """The error condition of a refused entry, or "joined"."""
    try:
        await muc.join_muc_wait(room_jid, "Guest", timeout=10, **kwargs)
        return "joined"
    except slixmpp.exceptions.PresenceError as e:
        return e.condition


async def run():
    await started["owner"].wait()
    await started["guest"].wait()
    muc_o, muc_g = owner["xep_0045"], guest["xep_0045"]

    items = await owner["xep_0030"].get_items(jid="localhost")
    result["services"] = [i[0] for i in items["disco_items"]["items"]]

    pres, _subject, _occ, _hist = await muc_o.join_muc_wait(room, "Owner", timeout=10)
    result["created_codes"] = sorted(pres["muc"]["status_codes"])
    form = await muc_o.get_room_config(room, timeout=10)
    result["form_fields"] = sorted(form.get_fields().keys())
    submit = owner["xep_0004"].make_form(ftype="submit")
    submit.add_field(var="FORM_TYPE", ftype="hidden", value="http://jabber.org/protocol/muc#roomconfig")
    submit.add_field(var="muc#roomconfig_roomname", value="Interop")
    submit.add_field(var="muc#roomconfig_whois", value="anyone")
    await muc_o.set_room_config(room, submit, timeout=10)
    info = await guest["xep_0030"].get_info(jid=room)
    result["room_features"] = sorted(info["disco_info"]["features"])

    # History: three messages before the guest enters; it asks for the last two.
    echoed = waiter(owner, "groupchat_message", lambda m: m["body"] == "early3")
    for i in (1, 2, 3):
        owner.send_message(mto=room, mbody=f"early{i}", mtype="groupchat")
    await asyncio.wait_for(echoed, 10)

    owner_pm = waiter(owner, "message", lambda m: m["type"] == "chat" and m["body"] == "psst")
    pres, _subject, occupants, hist = await muc_g.join_muc_wait(room, "Guest", maxstanzas=2, timeout=10)
    result["history"] = [m["body"] for m in hist]
    result["guest_codes"] = sorted(pres["muc"]["status_codes"])
    result["guest_sees"] = sorted(p["from"].resource for p in occupants)
    result["owner_real_jid_seen"] = str(muc_g.get_jid_property(room, "Owner", "jid"))

    got = waiter(guest, "groupchat_message", lambda m: m["body"] == "hello")
    owner.send_message(mto=room, mbody="hello", mtype="groupchat")
    msg = await asyncio.wait_for(got, 10)
    result["groupchat_from"] = str(msg["from"])

    subj = waiter(guest, "groupchat_subject", lambda m: m["subject"] == "Topic")
    muc_o.set_subject(room, "Topic")
    await asyncio.wait_for(subj, 10)
    result["subject"] = "Topic"

    guest.send_message(mto=f"{room}/Owner", mbody="psst", mtype="chat")
    pm = await asyncio.wait_for(owner_pm, 10)
    result["pm_from"] = str(pm["from"])

    await muc_o.set_affiliation(room, "member", jid=slixmpp.JID(guest_jid).bare, timeout=10)
    result["members"] = [str(j) for j in await muc_o.get_affiliation_list(room, "member", timeout=10)]

    devoiced = waiter(guest, "muc::%s::presence" % room,
                      lambda p: p["from"].resource == "Guest" and p["muc"]["role"] == "visitor")
    await muc_o.set_role(room, "Guest", "visitor", timeout=10)
    await asyncio.wait_for(devoiced, 10)
    result["guest_role"] = "visitor"

    ping = await guest["xep_0199"].send_ping(f"{room}/Guest", timeout=10)
    result["self_ping"] = ping["type"]

    # slixmpp raises groupchat_invite only for rooms it is not in, so the message is read as is.
    invite_path = "{%s}x/{%s}invite" % (USER, USER)
    invited = waiter(guest, "message", lambda m: m.xml.find(invite_path) is not None)
    muc_o.invite(room, slixmpp.JID(guest_jid).bare, reason="come")
    inv = await asyncio.wait_for(invited, 10)
    result["invite_from"] = inv.xml.find(invite_path).get("from")

    # A refused entry is reported to slixmpp as a presence error (the room is still locked).
    await muc_o.join_muc_wait(locked_room, "Owner", timeout=10)
    result["locked_join"] = await refused(muc_g, locked_room)

    # Nick change (303 with the new nick), then a kick (307) under the new nick, then back in.
    changed = waiter(guest, "muc::%s::presence" % room,
                     lambda p: p["type"] == "unavailable" and 303 in p["muc"]["status_codes"])
    guest.send_presence(pto=f"{room}/Guesty")
    item = (await asyncio.wait_for(changed, 10)).xml.find("{%s}x/{%s}item" % (USER, USER))
    result["new_nick"] = item.get("nick")
    kicked = waiter(guest, "muc::%s::presence" % room,
                    lambda p: p["type"] == "unavailable" and 307 in p["muc"]["status_codes"])
    await muc_o.set_role(room, "Guesty", "none", reason="bye", timeout=10)
    result["kick_codes"] = sorted((await asyncio.wait_for(kicked, 10))["muc"]["status_codes"])
    await muc_g.join_muc_wait(room, "Guest", timeout=10)

    # A password-protected room: refused without the password, entered with it; then a ban.
    await muc_o.join_muc_wait(club_room, "Owner", timeout=10)
    club = owner["xep_0004"].make_form(ftype="submit")
    club.add_field(var="muc#roomconfig_passwordprotectedroom", value="1")
    club.add_field(var="muc#roomconfig_roomsecret", value="pw")
    await muc_o.set_room_config(club_room, club, timeout=10)
    result["club_without_password"] = await refused(muc_g, club_room)
    await muc_g.join_muc_wait(club_room, "Guest", password="pw", timeout=10)
    banned = waiter(guest, "muc::%s::presence" % club_room,
                    lambda p: p["type"] == "unavailable" and 301 in p["muc"]["status_codes"])
    await muc_o.set_affiliation(club_room, "outcast", jid=slixmpp.JID(guest_jid).bare, timeout=10)
    result["ban_codes"] = sorted((await asyncio.wait_for(banned, 10))["muc"]["status_codes"])
    result["banned_join"] = await refused(muc_g, club_room, password="pw")

    destroyed = waiter(guest, "muc::%s::presence" % room, lambda p: p["type"] == "unavailable")
    await muc_o.destroy(room, reason="done", timeout=10)
    gone = await asyncio.wait_for(destroyed, 10)
    result["destroy_reason"] = gone.xml.find("{%s}x/{%s}destroy/{%s}reason" % (USER, USER, USER)).text


async def main():
    try:
        await asyncio.wait_for(run(), 60)
    finally:
        print(json.dumps(result), flush=True)
        owner.disconnect()
        guest.disconnect()


asyncio.get_event_loop().run_until_complete(main())
