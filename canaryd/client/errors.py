"""Exceptions of `canaryd.client`, and the exit code each one means for the CLI:

    ClientError                       any failure talking to canaryd
    ├── Unreachable          (3)      no connection, a timeout, or a 5xx answer
    ├── AuthFailed           (3)      401 (no valid token) or 403 (role too low)
    └── ProblemError         (2)      any other 4xx: the request itself is wrong
        └── NotFound         (2)      404

Exit codes: 0 Succeeded, 1 rolled back / failed / aborted, 2 bad input or usage,
3 server unreachable or auth failed, 4 --timeout reached.
"""

from __future__ import annotations

from typing import Any

SUCCEEDED, FAILED, USAGE, UNREACHABLE, TIMEOUT = 0, 1, 2, 3, 4


class ClientError(Exception):
    exit_code = UNREACHABLE


class Unreachable(ClientError):
    exit_code = UNREACHABLE


class ProblemError(ClientError):
    """An RFC 9457 answer; `problem` holds its fields (errors: one per bad field)."""

    exit_code = USAGE

    def __init__(self, status: int, problem: dict[str, Any]) -> None:
        self.status = status
        self.problem = problem
        super().__init__(f"{status} {problem.get('title', '')}: {problem.get('detail', '')}")

    def lines(self) -> list[str]:
        """The problem as a user should read it: the detail, then each bad field."""
        out = [f"{self.problem.get('title', 'error')} ({self.status}): "
               f"{self.problem.get('detail', '')}"]
        for err in self.problem.get("errors") or []:
            where = err.get("pointer")
            if where is None:
                where = err.get("parameter", "")
            out.append(f"  {where or '/'}: {err.get('detail', '')}")
        return out


class AuthFailed(ProblemError):
    exit_code = UNREACHABLE


class NotFound(ProblemError):
    pass
