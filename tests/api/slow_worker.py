"""A worker program for tests/api/test_workers.py: answers like `canaryd.api.documents`,
except that a request of content type "stall" is never answered (a stuck worker)."""

from __future__ import annotations

import pickle
import struct
import sys
import threading

FRAME = struct.Struct(">I")


def main() -> None:
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    while head := stdin.read(FRAME.size):
        content_type = stdin.read(FRAME.unpack(head)[0]).decode()
        stdin.read(FRAME.unpack(stdin.read(FRAME.size))[0])
        if content_type == "stall":
            threading.Event().wait()
        data = pickle.dumps((True, {"served": content_type}))
        stdout.write(FRAME.pack(len(data)) + data)
        stdout.flush()


if __name__ == "__main__":
    main()
