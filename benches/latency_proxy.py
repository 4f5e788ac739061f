#!/usr/bin/env python3
"""A TCP proxy that holds each HTTP request back by a fixed delay.

    latency_proxy.py LISTEN_PORT UPSTREAM_HOST:PORT DELAY_MS

Used by benches/concurrent_puts.sh to put S3 (moto) a round trip away.
A chunk from the client that starts a request (its first bytes are an
HTTP method) waits DELAY_MS before it is forwarded; the rest of a body and
the answers pass at once. A benchmark helper, not a test peer: the tests
use tests/support/fault_proxy.rs.
"""
import asyncio
import sys

METHODS = (b"GET ", b"PUT ", b"POST ", b"HEAD ", b"DELETE ")


async def pipe(reader, writer, delay):
    try:
        while True:
            chunk = await reader.read(65536)
            if not chunk:
                break
            if delay and chunk.startswith(METHODS):
                await asyncio.sleep(delay)
            writer.write(chunk)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        writer.close()


async def main():
    port, upstream, delay_ms = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    host, upstream_port = upstream.rsplit(":", 1)

    async def handle(client_reader, client_writer):
        server_reader, server_writer = await asyncio.open_connection(host, int(upstream_port))
        await asyncio.gather(
            pipe(client_reader, server_writer, delay_ms / 1000),
            pipe(server_reader, client_writer, 0),
        )

    server = await asyncio.start_server(handle, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


asyncio.run(main())
