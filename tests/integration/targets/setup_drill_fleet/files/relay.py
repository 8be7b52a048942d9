# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""TCP relay from addresses the test's network namespaces can reach to a loopback service.

    relay.py --to 127.0.0.1:19000 10.204.0.1:20410 10.204.0.5:20410

A process in a namespace has its own loopback: the lab's S3 server on the host's 127.0.0.1 is out
of its reach, as a real RAT host's MinIO would be behind its address. The relay listens on the
host-side address of each namespace's veth pair only, never on a public interface.
"""

import asyncio
import sys


async def pipe(reader, writer):
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


async def main(target, listens):
    host, port = target.rsplit(":", 1)

    async def serve(client_reader, client_writer):
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(host, int(port))
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(pipe(client_reader, upstream_writer), pipe(upstream_reader, client_writer))

    servers = []
    for listen in listens:
        address, listen_port = listen.rsplit(":", 1)
        servers.append(await asyncio.start_server(serve, address, int(listen_port)))
    print("listening", flush=True)
    await asyncio.gather(*(s.serve_forever() for s in servers))


if __name__ == "__main__":
    if len(sys.argv) < 4 or sys.argv[1] != "--to":
        sys.exit(__doc__)
    asyncio.run(main(sys.argv[2], sys.argv[3:]))
