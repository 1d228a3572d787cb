"""Types of the C extension (_speedups.c); the package wraps it, programs use kharbranth."""

from typing import Any, Callable, Iterable, List, Optional, Tuple

class Event:
    """One event of a connection (read-only attributes)."""

    kind: Any  # kharbranth.EventKind
    conn: str
    data: bytes
    size: int
    close_code: int
    error: Optional[BaseException]
    def __init__(self, kind: Any, conn: str, data: bytes, close_code: int = ...,
                 error: Optional[BaseException] = ...) -> None: ...
    @property
    def text(self) -> str: ...

class Poller:
    """kh_manager_poll into a reused array."""

    busy: int
    def __init__(self, poll_fn: int, manager: int, kinds: Iterable[Any],
                 make_error: Callable[[int, str], BaseException],
                 check: Callable[[int], None]) -> None: ...
    def poll(self, max_events: int, timeout_ms: int) -> List[Event]: ...
    def detach(self) -> None: ...

def log_callback_address() -> int: ...
def log_wait(timeout_ms: int) -> Tuple[List[Tuple[int, str, str]], int, bool]: ...
def log_stop() -> None: ...
