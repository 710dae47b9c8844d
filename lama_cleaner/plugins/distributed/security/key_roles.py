"""Which role an admitted CURVE key may play: any (a web server, or a machine trusted with both), or only
that of a node.

A GPU box runs code that handles users' images and is the likelier machine to be compromised. With its
key in ``curve_node_keys`` instead of ``curve_authorized_keys`` it can still register, take tasks and
report on the ones dispatched to it, but every producer request from it (submit, read, fetch, cancel,
list, drain, a plugin's call) is refused: a compromised worker cannot read or cancel other users' tasks
or drain the fleet. Both folders are read again when they change (``allow_list.AllowList``).
"""

from __future__ import annotations

from .allow_list import AllowList


class KeyRoles:
    """The union of both allow-lists for admission (ZAP, per-message revocation), and the question the
    scheduler asks of a producer request: does this key hold only the node role?"""

    def __init__(self, any_role: AllowList, nodes_only: AllowList | None = None) -> None:
        self.any_role = any_role
        self.nodes_only = nodes_only

    def allows(self, public_key: bytes) -> bool:
        """Admitted at all: in either folder (or the scheduler's own key)."""
        if self.any_role.allows(public_key):
            return True
        return self.nodes_only is not None and self.nodes_only.allows(public_key)

    def node_only(self, public_key: bytes) -> bool:
        """In ``curve_node_keys`` and not in ``curve_authorized_keys``: producer requests are refused."""
        if self.nodes_only is None or self.any_role.allows(public_key):
            return False
        return self.nodes_only.allows(public_key)
