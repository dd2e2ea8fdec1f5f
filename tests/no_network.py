"""Run a Python script as if this machine had no network: every connection to, or name lookup of, a
host other than this machine is refused (as an unplugged network refuses it) and written to LOG.

    python tests/no_network.py LOG script.py [args...]

tests/test_hostile.py starts `python app.py` this way, to check that start-up and answering work
without a network and try to reach no other host. It guards Python's socket module (what gradio,
httpx, huggingface_hub and urllib use), not sockets opened by native code or by child processes.
"""

from __future__ import annotations

import errno
import ipaddress
import runpy
import socket
import sys
from pathlib import Path

LOCAL_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", ""}


def is_local(host: object) -> bool:
    if host is None:
        return True
    if isinstance(host, bytes):
        host = host.decode(errors="replace")
    name = str(host).strip("[]").lower()
    if name in LOCAL_NAMES:
        return True
    try:
        address = ipaddress.ip_address(name.split("%")[0])
    except ValueError:
        return False  # a name other than localhost: a lookup that would go out
    return address.is_loopback or address.is_unspecified  # 0.0.0.0: listening, not calling


LOG = "no-network.log"  # set from the command line


def record(what: str) -> None:
    with open(LOG, "a", encoding="utf-8") as log:
        log.write(what + "\n")


_getaddrinfo = socket.getaddrinfo
_connect = socket.socket.connect
_connect_ex = socket.socket.connect_ex
_sendto = socket.socket.sendto


def getaddrinfo(host, *args, **kwargs):
    if not is_local(host):
        record(f"getaddrinfo {host}")
        raise socket.gaierror(socket.EAI_NONAME, f"no network: {host} not looked up")
    return _getaddrinfo(host, *args, **kwargs)


def _refused(sock: socket.socket, address) -> bool:
    if sock.family not in (socket.AF_INET, socket.AF_INET6) or is_local(address[0]):
        return False
    record(f"connect {address[0]}:{address[1]}")
    return True


def connect(self, address):
    if _refused(self, address):
        raise OSError(errno.ENETUNREACH, "Network is unreachable (no network)")
    return _connect(self, address)


def connect_ex(self, address):
    return errno.ENETUNREACH if _refused(self, address) else _connect_ex(self, address)


def sendto(self, data, *args):
    address = args[-1]
    if _refused(self, address):
        raise OSError(errno.ENETUNREACH, "Network is unreachable (no network)")
    return _sendto(self, data, *args)


def main() -> None:
    global LOG
    LOG = sys.argv[1]
    open(LOG, "a").close()  # exists, empty: nothing tried yet
    socket.getaddrinfo = getaddrinfo
    socket.socket.connect = connect
    socket.socket.connect_ex = connect_ex
    socket.socket.sendto = sendto
    sys.argv = sys.argv[2:]
    sys.path.insert(0, str(Path(sys.argv[0]).resolve().parent))  # as `python script.py` would
    runpy.run_path(sys.argv[0], run_name="__main__")


if __name__ == "__main__":
    main()
