"""Worker processes for :func:`cascade.backfill`: each runs one partition at a time with ``cascade.run``.

The parent hands a worker one partition, waits for its outcome (an ``IngestionResult`` or a
:class:`PartitionFailure`), then hands it the next, so a slow day holds back no other. What a
worker prints or logs comes back to the parent as text and is written to the parent's own
``sys.stdout``/``sys.stderr`` (above a progress bar, through a redacting stream, into a test's
capture), never straight to the terminal.

Start method: on Linux the workers fork from the parent once it has imported what a run needs
(:func:`cascade.backfills.warm_up`), so no worker pays the seconds that importing dlt, pyiceberg
and pandera costs, and assets registered in process (not only through entry points) are there.
Elsewhere (macOS, Windows) forking is unsafe or missing, and workers are spawned: each imports
Cascade and discovers the asset by name. A forked child never touches what it inherited beyond
the asset and configuration: it opens its own catalog and HTTP sessions, writes through its
own streams, and does not collect the parent's garbage (``gc.freeze`` around the fork), so it
never closes a database file descriptor the parent opened.

Signals: workers ignore SIGINT (a terminal's Ctrl-C reaches the whole process group; the parent
decides to stop handing out work, and a running partition finishes). SIGTERM aborts the running
partition through ``KeyboardInterrupt``, so the run's own clean-up runs; its commit is atomic,
landed whole or not at all. A worker that dies (``kill -9``, a crash in native code) is seen
through its process sentinel; its partition is reported failed and a new worker takes its place.
"""

from __future__ import annotations

import contextlib
import copyreg
import gc
import io
import multiprocessing
import pickle
import signal
import sys
import threading
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from types import FrameType, MappingProxyType
from typing import Any, Literal, TextIO

from cascade.config import CascadeConfig
from cascade.errors import CascadeError
from cascade.ingestion import CascadeAsset
from cascade.redaction import redact
from cascade.results import IngestionResult

StartMethod = Literal["fork", "spawn"]
STOP_SECONDS = 10.0  # how long a worker told to stop (or to abort) has before it is killed


@dataclass(frozen=True)
class PartitionFailure:
    """A partition that did not land: the error's kind (its class name) and first line, redacted.

    ``transient`` is the error's own mark (:attr:`cascade.CascadeError.transient`): whether
    running the partition again may succeed. A worker that died while running the partition
    has kind ``WorkerDied``; one aborted by a second Ctrl-C has kind ``Interrupted``.
    """

    partition: str
    kind: str
    message: str
    transient: bool = False

    @classmethod
    def from_error(cls, partition: str, error: BaseException) -> PartitionFailure:
        lines = redact(str(error)).strip().splitlines()
        return cls(partition, type(error).__name__, lines[0] if lines else type(error).__name__, error_transient(error))

    def as_dict(self) -> dict[str, object]:
        return {"kind": self.kind, "message": self.message, "transient": self.transient}


def error_transient(error: BaseException) -> bool:
    return isinstance(error, CascadeError) and error.transient


Outcome = IngestionResult | PartitionFailure


def default_start_method() -> StartMethod:
    """Fork where it is safe and cheap (Linux), spawn elsewhere."""
    return "fork" if sys.platform.startswith("linux") else "spawn"


@dataclass(frozen=True)
class Job:
    """What every worker of one backfill runs: partitions of ``asset`` on ``branch``.

    Forked workers get the asset itself; spawned ones get its name and discover it.
    """

    asset: CascadeAsset[Any, Any] | str
    branch: str
    config: CascadeConfig


def run_partition(asset: CascadeAsset[Any, Any], partition: str, branch: str, config: CascadeConfig) -> Outcome:
    """One ``cascade.run``, its failure caught as a :class:`PartitionFailure`."""
    from cascade.runner import run

    try:
        return run(asset, partition, branch=branch, config=config)
    except Exception as error:  # cascade.run raises CascadeErrors; anything else is reported the same way
        return PartitionFailure.from_error(partition, error)


# --- messages: pickled with a private dispatch table, since results hold MappingProxyType values


def mapping_proxy(values: dict[Any, Any]) -> MappingProxyType[Any, Any]:
    return MappingProxyType(values)


def _reduce_mapping_proxy(value: MappingProxyType[Any, Any]) -> tuple[Any, tuple[dict[Any, Any]]]:
    return mapping_proxy, (dict(value),)  # the type itself cannot be pickled by reference


def dumps(value: object) -> bytes:
    buffer = io.BytesIO()
    pickler = pickle.Pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL)
    pickler.dispatch_table = {**copyreg.dispatch_table, MappingProxyType: _reduce_mapping_proxy}
    pickler.dump(value)
    return buffer.getvalue()


def send(connection: Connection, message: object, lock: threading.Lock | None = None) -> None:
    data = dumps(message)
    with lock or contextlib.nullcontext():
        connection.send_bytes(data)


def receive(connection: Connection) -> Any:
    return pickle.loads(connection.recv_bytes())


# --- the worker side


class ParentStream(io.TextIOBase):
    """A worker's ``sys.stdout`` or ``sys.stderr``: whole lines go to the parent, which writes them."""

    def __init__(self, connection: Connection, lock: threading.Lock, name: str) -> None:
        super().__init__()
        self._connection = connection
        self._lock = lock
        self._name = name
        self._pending = ""

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def write(self, text: str) -> int:
        self._pending += text
        if "\n" in self._pending:
            lines, _, self._pending = self._pending.rpartition("\n")
            self._send(lines + "\n")
        return len(text)

    def flush(self) -> None:
        if self._pending:
            text, self._pending = self._pending, ""
            self._send(text)

    def _send(self, text: str) -> None:
        with contextlib.suppress(OSError, ValueError):  # the parent is gone: nowhere to write
            send(self._connection, ("output", self._name, text), self._lock)


class _Abort:
    """The SIGTERM handler: unwinds the running partition through ``KeyboardInterrupt`` (its
    finally blocks clean up), and remembers it was asked to."""

    def __init__(self) -> None:
        self.requested = False

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.requested = True
        raise KeyboardInterrupt


def work(connection: Connection, job: Job | bytes) -> None:
    """A worker's life: run the partitions the parent sends, one at a time, until told to stop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    abort = _Abort()
    signal.signal(signal.SIGTERM, abort)
    lock = threading.Lock()
    sys.stdout = ParentStream(connection, lock, "stdout")
    sys.stderr = ParentStream(connection, lock, "stderr")
    try:
        loaded = _job(job)
        asset = job_asset(loaded)
        while (partition := receive(connection)) is not None:
            if isinstance(asset, Exception):  # every partition fails as the asset's discovery did
                outcome: Outcome = PartitionFailure.from_error(partition, asset)
            else:
                outcome = run_partition(asset, partition, loaded.branch, loaded.config)
                if abort.requested and isinstance(outcome, PartitionFailure):
                    # the abort's doing, whatever error a library made of the interrupt: the parent
                    # reports the partition it handed out and heard nothing back about as interrupted
                    return
            sys.stdout.flush()
            sys.stderr.flush()
            try:
                message = dumps(("outcome", outcome))
            except Exception as error:  # a result that will not pickle must not cost the worker
                message = dumps(("outcome", unsendable(partition, error)))
            with lock:
                connection.send_bytes(message)
    except (KeyboardInterrupt, EOFError, OSError):
        pass  # aborted, or the parent is gone
    finally:
        _flush_telemetry()
        sys.stdout.flush()
        sys.stderr.flush()


def unsendable(partition: str, error: Exception) -> PartitionFailure:
    return PartitionFailure(
        partition,
        type(error).__name__,
        f"the run finished but its result could not be sent back ({redact(str(error))}); "
        "it may have landed: run the backfill again to resume",
    )


def _job(job: Job | bytes) -> Job:
    """The job as forked (itself) or spawned (pickled by the parent)."""
    loaded = pickle.loads(job) if isinstance(job, bytes) else job
    assert isinstance(loaded, Job)
    return loaded


def job_asset(job: Job) -> CascadeAsset[Any, Any] | Exception:
    """The job's asset: given (forked), or found by name after discovery (spawned), or why not."""
    asset = job.asset
    if not isinstance(asset, str):
        return asset
    from cascade.asset_registry import registry
    from cascade.discovery import discover

    try:
        discover(job.config)
        return registry().get(asset)
    except Exception as error:
        return error


def _flush_telemetry() -> None:
    """Export what the worker's tracer and meter providers still hold: a worker exits without atexit."""
    from opentelemetry import metrics, trace

    for provider in (trace.get_tracer_provider(), metrics.get_meter_provider()):
        flush = getattr(provider, "force_flush", None)
        if flush is not None:
            with contextlib.suppress(Exception):
                flush()


# --- the parent side


@dataclass
class Worker:
    """One worker process, its end of the pipe, and the partition it is running (None: idle)."""

    process: BaseProcess
    connection: Connection
    partition: str | None = None


class WorkerPool:
    """Up to ``size`` long-lived workers running ``job``'s partitions; see the module's docstring."""

    def __init__(self, job: Job, size: int, start_method: StartMethod) -> None:
        self._job = job
        self._size = size
        self._start_method = start_method
        self._context: Any = multiprocessing.get_context(start_method)  # typeshed's BaseContext lacks Process
        self._workers: list[Worker] = []

    @property
    def busy(self) -> list[Worker]:
        return [w for w in self._workers if w.partition is not None]

    @property
    def idle(self) -> list[Worker]:
        return [w for w in self._workers if w.partition is None]

    def fill(self, wanted: int) -> None:
        """Start workers until there are ``wanted`` (at the start, and in place of any that died)."""
        missing = min(wanted, self._size) - len(self._workers)
        if missing <= 0:
            return
        frozen = self._start_method == "fork"
        if frozen:
            gc.collect()  # what the parent dropped is closed here, never in a child
            gc.freeze()  # and a child never collects what it inherited
        try:
            self._workers.extend(self._start() for _ in range(missing))
        finally:
            if frozen:
                gc.unfreeze()

    def _start(self) -> Worker:
        ours, theirs = self._context.Pipe()
        job: Job | bytes = self._job
        if self._start_method != "fork":
            asset = self._job.asset
            job = dumps(Job(asset if isinstance(asset, str) else asset.spec.name, self._job.branch, self._job.config))
        process = self._context.Process(target=work, args=(theirs, job), name="cascade-backfill", daemon=True)
        process.start()
        theirs.close()
        return Worker(process, ours)

    def assign(self, worker: Worker, partition: str) -> None:
        worker.partition = partition
        with contextlib.suppress(OSError):  # it died: its sentinel reports it, with this partition, on the next wait
            send(worker.connection, partition)

    def wait(self, timeout: float) -> list[Outcome]:
        """Outcomes that came back within ``timeout``, and failures of partitions whose worker died."""
        ready = set(wait([o for w in self._workers for o in (w.connection, w.process.sentinel)], timeout))
        finished: list[Outcome] = []
        for worker in list(self._workers):
            if worker.connection in ready or worker.process.sentinel in ready:
                finished.extend(self._drain(worker))
        return finished

    def _drain(self, worker: Worker) -> list[Outcome]:
        """What ``worker`` sent; if it is gone, the failure of the partition it was running."""
        outcomes, closed = self._receive(worker)
        if closed or not worker.process.is_alive():
            self._bury(worker)
            if worker.partition is not None:
                outcomes.append(died(worker))
        return outcomes

    def _receive(self, worker: Worker) -> tuple[list[Outcome], bool]:
        """The outcomes waiting in ``worker``'s pipe (its output is written on the way), and whether it closed."""
        outcomes: list[Outcome] = []
        try:
            while worker.connection.poll():
                message = receive(worker.connection)
                if message[0] == "output":
                    _write(message[1], message[2])
                else:
                    worker.partition = None
                    outcomes.append(_redacted(message[1]))
        except (EOFError, OSError):
            return outcomes, True
        return outcomes, False

    def _bury(self, worker: Worker) -> None:
        _stop(worker.process)
        self._workers.remove(worker)
        worker.connection.close()

    def abort(self) -> list[Outcome]:
        """Stop the running partitions now (SIGTERM: each unwinds, nothing half-committed)."""
        running = self.busy
        for worker in running:
            with contextlib.suppress(OSError):
                worker.process.terminate()
        finished: list[Outcome] = []
        for worker in running:
            _stop(worker.process)
            finished.extend(self._receive(worker)[0])  # it may have finished just before
            if worker.partition is not None:
                finished.append(interrupted(worker.partition))
            self._bury(worker)
        return finished

    def close(self) -> None:
        """Tell every worker to stop, wait for it a while, then kill what is left."""
        for worker in self._workers:
            with contextlib.suppress(OSError):
                send(worker.connection, None)
        for worker in list(self._workers):
            self._bury(worker)


def _stop(process: BaseProcess) -> None:
    """Wait for a worker told to stop (or already dead); kill it if it will not."""
    process.join(STOP_SECONDS)
    if process.is_alive():
        process.kill()
        process.join()


def interrupted(partition: str) -> PartitionFailure:
    return PartitionFailure(
        partition,
        "Interrupted",
        "interrupted (a second Ctrl-C) while running; its commit is atomic: run the backfill again to resume",
    )


def died(worker: Worker) -> PartitionFailure:
    """The failure of the partition a dead worker was running."""
    assert worker.partition is not None
    code = worker.process.exitcode
    how = f"exit code {code}"
    if code is not None and code < 0:
        with contextlib.suppress(ValueError):
            how = f"killed by {signal.Signals(-code).name}"
    return PartitionFailure(
        worker.partition,
        "WorkerDied",
        f"the worker process running it ({worker.process.pid}) died ({how}); "
        "its commit is atomic: run the backfill again to resume",
    )


def _redacted(outcome: Outcome) -> Outcome:
    """Masked again in the parent: a spawned worker does not know the secrets the parent's configuration named."""
    if isinstance(outcome, PartitionFailure):
        return PartitionFailure(outcome.partition, outcome.kind, redact(outcome.message), outcome.transient)
    return outcome


def _write(name: str, text: str) -> None:
    stream: TextIO = sys.stdout if name == "stdout" else sys.stderr
    stream.write(text)
    stream.flush()
