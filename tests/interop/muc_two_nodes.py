"""muc_session.py with its two clients on two cluster nodes: the owner on one, the guest on another.

Usage: muc_two_nodes.py PORT OWNER_JID GUEST_JID PASSWORD ROOM OWNER_HOST GUEST_HOST GUEST_PORT
Prints what muc_session.py prints.
"""
import os
import runpy
import sys

import slixmpp

owner_host, guest_host, guest_port = sys.argv[6:9]
guest_bare = sys.argv[3].split("/")[0]
connect = slixmpp.ClientXMPP.connect


def connect_to_own_node(self, address=None, **kwargs):
    if self.boundjid.bare == guest_bare:
        address = (guest_host, int(guest_port))
    else:
        address = (owner_host, address[1])
    return connect(self, address=address, **kwargs)


slixmpp.ClientXMPP.connect = connect_to_own_node
sys.argv = sys.argv[:6]
runpy.run_path(os.path.join(os.path.dirname(__file__), "muc_session.py"), run_name="__main__")
