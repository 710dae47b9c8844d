"""Which role an admitted CURVE key may play: any, only that of a node, or only that of a producer.

A GPU box runs code that handles users' images and is the likelier machine to be compromised. With its
key in ``curve_node_keys`` instead of ``curve_authorized_keys`` it can still register, take tasks and
report on the ones dispatched to it, but every producer request from it (submit, read, fetch, cancel,
list, drain, a plugin's call) is refused: a compromised worker cannot read or cancel other users' tasks
or drain the fleet. The other way round, a web server's key in ``curve_producer_keys`` submits and
reads but cannot register as a node, so a compromised web server cannot pull other web servers' users'
images. Every folder is read again when it changes (``allow_list.AllowList``).
"""

from __future__ import annotations

from .allow_list import AllowList

NODE = "node"
PRODUCER = "producer"


class KeyRoles:
    """The union of the allow-lists for admission (ZAP, per-message revocation), and the question the
    scheduler asks of every message: may this key play the role the message belongs to?"""

    def __init__(
        self, any_role: AllowList, nodes_only: AllowList | None = None, producers_only: AllowList | None = None
    ) -> None:
        self.any_role = any_role
        self.only: dict[str, AllowList] = {}
        if nodes_only is not None:
            self.only[NODE] = nodes_only
        if producers_only is not None:
            self.only[PRODUCER] = producers_only

    def allows(self, public_key: bytes) -> bool:
        """Admitted at all: in any folder (or the scheduler's own key)."""
        return self.any_role.allows(public_key) or any(folder.allows(public_key) for folder in self.only.values())

    def may(self, public_key: bytes, role: str) -> bool:
        """Whether the key may play ``role`` (``NODE`` or ``PRODUCER``): it is in ``curve_authorized_keys``
        (or is the scheduler's own), or in the folder of that role."""
        if self.any_role.allows(public_key):
            return True
        folder = self.only.get(role)
        return folder is not None and folder.allows(public_key)
