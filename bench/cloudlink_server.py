"""The Python CloudLink server (0.2.0.1, from PyPI) as the benchmark's reference.

Starts the stock server with both of its protocols loaded, CL4 first and then
Scratch (the order the package's example server uses, so a message that fits
both schemas is taken as CL4), and nothing else: no plugins, no MOTD, default
limits, logging at WARNING so that logging costs nothing per message:

    python bench/cloudlink_server.py --host 127.0.0.1 --port 3000

scripts/bench-cloudlink.sh runs it from a throwaway virtualenv under
target/cloudlink-bench-venv and passes the address to the load generator,
which starts one fresh server per measurement.
"""

import argparse
import logging

from cloudlink import server
from cloudlink.server.protocols import clpv4, scratch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=3000, help="port to listen on")
    args = parser.parse_args()

    cl = server()
    cl.logging.basicConfig(level=logging.WARNING)
    # Building a protocol object registers its commands and hooks on the server.
    clpv4(cl)
    scratch(cl)
    cl.run(ip=args.host, port=args.port)


if __name__ == "__main__":
    main()
