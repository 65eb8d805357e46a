"""nativepool.Future: a concurrent.futures.Future whose machinery is C."""
import concurrent.futures

from . import _nativepool

__all__ = ["Future"]


class Future(_nativepool.FutureBase, concurrent.futures.Future):
    """Represents the result of an asynchronous computation.

    A drop-in ``concurrent.futures.Future`` (it is an instance of one): the
    stdlib's ``wait``, ``as_completed``, ``asyncio.wrap_future`` and
    ``loop.run_in_executor`` accept it, and it can be awaited.
    """

    __slots__ = ()

    def __await__(self):
        import asyncio

        return (yield from asyncio.wrap_future(self).__await__())

