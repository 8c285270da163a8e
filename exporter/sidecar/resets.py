"""Output-connector reset tracking: operators register reset tokens, the exporter polls their status.

Each cycle, :meth:`ResetWatches.check` (its report is ``TargetSnapshot.resets``) asks
``GET /v0/pipelines/{p}/reset_status?token=`` for every watch of the target that is not finished, and maps the
answer onto a state:

* 200 -> the body is not specified by Feldera; :func:`parse_reset_body` recognises the shapes listed in
  ``docs/sidecar.md`` (``pending`` or ``completed``), anything else is ``unknown`` (and polled again);
* 400 ``NotSupported`` or a 404 without ``UnknownPipelineName`` -> ``unsupported``: the server has no reset
  endpoint (open-source Feldera: a stub in 0.290.0-0.297.0, no route since 0.298.0; docs/feldera-api.md), so the
  watch can never complete; one log line per target;
* any other 400 -> ``invalid`` (the server does not know the token), 404 ``UnknownPipelineName`` -> ``invalid`` as
  well;
* 410 -> ``expired``: the token is from a previous incarnation of the pipeline, the reset must be reissued;
* 500, 503, 502/504 from a proxy, timeouts -> no change (the state is kept, ``last_checked`` is not advanced).

``completed``, ``invalid``, ``expired`` and ``unsupported`` are final: such watches are no longer polled and are dropped
``keep_completed`` seconds after they reached that state. Watches are persisted to the state file after every
change by one writer task, the file's only writer: it saves the latest watches in a thread of its own (so the event
loop never waits on the disk) until every change is written, several changes made during one save in one more
save. At most one save runs at any time, and a stuck one (a hung mount) never holds up a poll cycle: the poll path
does not wait for its writes, the HTTP API waits for the write that covers its change. A state file that cannot be
read or parsed is logged, counted, moved aside to ``<file>.corrupt`` and the exporter starts with no watches.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import json
import logging
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

from exporter.client import FelderaClient
from exporter.errors import ApiError, FelderaError, InvalidResponse
from exporter.logsafe import clean
from exporter.ownthread import in_own_thread
from exporter.sidecar import store
from exporter.sidecar.store import FINAL_STATES, STATES, StateFileError, StoredWatch
from exporter.sidecar.target import Target
from exporter.snapshot import ResetReport, WatchReport

log = logging.getLogger(__name__)

__all__ = ["STATES", "ResetWatches", "WatchError", "parse_reset_body"]

STATE_FILE_OPERATIONS = ("load", "save")
MAX_WATCHES = 1000
MAX_TOKEN_LENGTH = 4096
FLUSH_ON_STOP = 3.0
"""Seconds :meth:`ResetWatches.close` waits for the state file to be written before the exporter exits."""
_NAME = re.compile(r"^[A-Za-z0-9_.:@/-]{1,128}$")
# Feldera's own rule for pipeline names (letters, digits, '_' and '-'): a watch can never name a path such as '..'
# that would take its reset_status request out of /v0/pipelines/{name}/.
PIPELINE_NAME = re.compile(r"^[A-Za-z0-9_-]{1,512}$")


def _valid_name(name: str) -> bool:
    """A watch name the API can address: ``.`` and ``..`` are dot-segments in ``/api/v1/reset-watches/{name}``."""
    return bool(_NAME.match(name)) and name not in (".", "..")


_LOGGED_BODY_CHARS = 200

_COMPLETED_WORDS = frozenset({"done", "completed", "complete", "finished", "success", "succeeded", "ok"})
_PENDING_WORDS = frozenset({"pending", "in_progress", "inprogress", "in progress", "running", "started", "waiting"})
_STATUS_KEYS = ("status", "state")
_DONE_FLAGS = ("done", "completed", "complete", "finished")


def parse_reset_body(body: object) -> str:
    """Map a 200 answer of reset_status onto ``pending``, ``completed`` or ``unknown``.

    >>> [parse_reset_body(b) for b in ({"status": "done"}, {"done": False}, "Completed", {"x": 1})]
    ['completed', 'pending', 'completed', 'unknown']
    """
    if isinstance(body, bool):
        return "completed" if body else "pending"
    if isinstance(body, str):
        return _word_state(body)
    if isinstance(body, Mapping):
        for key in _STATUS_KEYS:
            value = body.get(key)
            if isinstance(value, str):
                return _word_state(value)
            if isinstance(value, Mapping):
                return parse_reset_body(value)
        for key in _DONE_FLAGS:
            value = body.get(key)
            if isinstance(value, bool):
                return "completed" if value else "pending"
        value = body.get("pending")
        if isinstance(value, bool):
            return "pending" if value else "completed"
    return "unknown"


def _word_state(text: str) -> str:
    word = text.strip().strip('"').strip().lower()
    if word in _COMPLETED_WORDS:
        return "completed"
    if word in _PENDING_WORDS:
        return "pending"
    return "unknown"


class WatchError(Exception):
    """A registration request that cannot be honoured; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def default_watch_name(pipeline: str, token: str) -> str:
    return f"{pipeline}-{hashlib.sha256(token.encode()).hexdigest()[:8]}"


class ResetWatches:
    """The registry of reset watches of all targets, persisted to ``state_file`` (None: memory only)."""

    def __init__(
        self,
        targets: Sequence[str],
        state_file: Path | None,
        keep_completed: float,
        clock: Callable[[], float],
        *,
        concurrency: int = 8,
    ) -> None:
        if not targets:
            raise ValueError("at least one target is needed")
        self._targets = tuple(targets)
        self._path = state_file
        self._keep = keep_completed
        self._clock = clock
        self._limit = asyncio.Semaphore(concurrency)
        self._requested = 0  # generation of the latest change; a write of generation g holds every change up to g
        self._written = 0  # generation of the latest write that ended (saved, or failed and counted)
        self._saved = asyncio.Condition()  # notified whenever _written advances
        self._writer: asyncio.Task[None] | None = None
        self._watches: dict[str, StoredWatch] = {}
        self._errors = dict.fromkeys(STATE_FILE_OPERATIONS, 0)
        self._unsupported_logged: set[str] = set()
        """Targets whose missing reset endpoint was logged (once per target)."""

    def retarget(self, targets: Sequence[str], keep_completed: float) -> None:
        """The configured targets (the first is the default) and ``keep_completed`` after a configuration reload;
        watches of a target no longer configured are kept (listed, removable) but no longer checked."""
        if not targets:
            raise ValueError("at least one target is needed")
        self._targets, self._keep = tuple(targets), keep_completed

    @property
    def state_file_errors(self) -> Mapping[str, int]:
        return dict(self._errors)

    def load(self) -> None:
        """Read the state file once at start; never raises (errors are logged and counted)."""
        if self._path is None:
            return
        try:
            watches = store.load(self._path)
        except StateFileError as exc:
            self._errors["load"] += 1
            aside = store.move_aside(self._path) if self._path.exists() else None
            where = f"; moved to {aside}" if aside else ""
            log.error("reset watches not restored: %s%s; starting with no watches", exc, where)
            return
        invalid = [w.name for w in watches if not PIPELINE_NAME.match(w.pipeline) or not _valid_name(w.name)]
        if invalid:
            log.error("reset watches %s not restored: invalid pipeline or watch name", ", ".join(map(clean, invalid)))
        self._watches = {watch.name: watch for watch in watches if watch.name not in invalid}
        log.info("restored %d reset watch(es) from %s", len(self._watches), self._path)

    def _changed(self) -> int:
        """Have the watches as they are now written (the writer task starts unless it runs); the generation of
        this change, for :meth:`_written_up_to`. Never waits: the poll cycle calls it."""
        if self._path is None:
            return 0
        self._requested += 1
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write(self._path), name="reset-watch-writer")
        return self._requested

    async def _written_up_to(self, generation: int) -> None:
        """Until a write that covers ``generation`` has ended; cancelling this wait (a request's deadline) leaves
        the write running."""
        async with self._saved:
            await self._saved.wait_for(lambda: self._written >= generation)

    async def _write(self, path: Path) -> None:
        """The state file's only writer: while a change is not written, save the latest watches, one save at a
        time. A failed save is counted and logged; the next change is written all the same."""
        while self._written < self._requested:
            generation, watches = self._requested, list(self._watches.values())
            try:
                await in_own_thread(functools.partial(store.save, path, watches), name="reset-watch-save")
            except OSError as exc:
                self._errors["save"] += 1
                log.error("cannot write reset watch state file %s: %s", path, exc.strerror or exc)
            except Exception as exc:  # a bug: logged (tokens redacted) and counted, never an unretrieved task exception
                self._errors["save"] += 1
                reason = clean(f"{type(exc).__name__}: {exc}", tuple(watch.token for watch in watches))
                log.error("cannot write reset watch state file %s: %s", path, reason)
            async with self._saved:
                self._written = generation
                self._saved.notify_all()

    async def close(self, grace: float = FLUSH_ON_STOP) -> None:
        """Wait up to ``grace`` seconds for the pending write, then stop waiting (a stuck save's daemon thread does
        not keep the process from exiting)."""
        if self._writer is None or self._writer.done():
            return
        done, _ = await asyncio.wait([self._writer], timeout=grace)
        if not done:
            log.error(
                "reset watch state file %s not written within %gs of stopping: changes may be lost", self._path, grace
            )
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer

    async def register(
        self, pipeline: object, token: object, name: object = None, target: object = None
    ) -> StoredWatch:
        """Add (or replace, same name) a watch; raises :class:`WatchError` on invalid input (the values come from a
        client's JSON: each is checked for its type here)."""
        if not isinstance(pipeline, str) or not PIPELINE_NAME.match(pipeline):
            raise WatchError(400, "pipeline must be a Feldera pipeline name: 1-512 characters of A-Z a-z 0-9 _ -")
        if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_LENGTH or not token.isprintable():
            raise WatchError(400, "token must be a non-empty printable string")
        target = self._targets[0] if target is None else target
        if not isinstance(target, str) or target not in self._targets:
            raise WatchError(404, f"unknown target {target!r}")
        name = default_watch_name(pipeline, token) if name is None else name
        if not isinstance(name, str) or not _valid_name(name):
            # '.' and '..' would be dot-segments in DELETE /api/v1/reset-watches/{name}: never removable
            raise WatchError(400, "name must be 1-128 characters of A-Z a-z 0-9 _ . : @ / -, other than . and ..")
        if name not in self._watches and len(self._watches) >= MAX_WATCHES:
            raise WatchError(409, f"too many watches (at most {MAX_WATCHES}); remove some first")
        watch = StoredWatch(name=name, target=target, pipeline=pipeline, token=token, registered_at=self._clock())
        self._watches[name] = watch
        await self._written_up_to(self._changed())
        log.info("watching reset %s of %s/%s", name, target, clean(pipeline))
        return watch

    async def remove(self, name: str) -> bool:
        if self._watches.pop(name, None) is None:
            return False
        await self._written_up_to(self._changed())
        return True

    def watches(self) -> list[StoredWatch]:
        return sorted(self._watches.values(), key=lambda watch: watch.name)

    def _prune(self, now: float) -> bool:
        expired = [
            name
            for name, watch in self._watches.items()
            if watch.finished_at is not None and now - watch.finished_at >= self._keep
        ]
        for name in expired:
            del self._watches[name]
        return bool(expired)

    async def check(self, target: Target, now: float) -> ResetReport:
        """Check every unfinished watch of ``target`` once (each poll cycle); report them all."""
        changed = self._prune(now)
        active = [w for w in self._watches.values() if w.target == target.name and w.status not in FINAL_STATES]
        if active:
            results = await asyncio.gather(*(self._check(target.client, watch) for watch in active))
            for watch, state in zip(active, results, strict=True):
                if state is None or watch.name not in self._watches:
                    continue
                updated = watch.model_copy(
                    update={
                        "status": state,
                        "last_checked": now,
                        "finished_at": now if state in FINAL_STATES else None,
                    }
                )
                changed = changed or state != watch.status
                self._watches[watch.name] = updated
        if changed:
            self._changed()  # written in the background: a stuck save never holds up the poll cycle
        return self.report(target.name, now)

    def report(self, target: str, now: float) -> ResetReport:
        return ResetReport(watches=tuple(_report(watch, now) for watch in self.watches() if watch.target == target))

    async def _check(self, client: FelderaClient, watch: StoredWatch) -> str | None:
        try:
            async with self._limit:
                body = await client.reset_status(watch.pipeline, watch.token)
        except InvalidResponse as exc:
            log.warning("reset watch %s: unrecognised reset_status answer (%s)", watch.name, _safe(exc, watch))
            return "unknown"
        except ApiError as exc:
            state = _error_state(exc)
            if state is None:
                log.info("reset watch %s: reset_status not available (%s)", watch.name, _safe(exc, watch))
            elif state == "unsupported":
                self._log_unsupported(watch, exc)
            else:
                log.warning("reset watch %s is %s (%s)", watch.name, state, _safe(exc, watch))
            return state
        except FelderaError as exc:
            log.info("reset watch %s: reset_status not available (%s)", watch.name, _safe(exc, watch))
            return None
        state = parse_reset_body(body)
        if state == "unknown":
            log.warning("reset watch %s: unrecognised reset_status answer %s", watch.name, _safe(_excerpt(body), watch))
        return state

    def _log_unsupported(self, watch: StoredWatch, exc: ApiError) -> None:
        if watch.target in self._unsupported_logged:
            log.debug("reset watch %s is unsupported (%s)", watch.name, _safe(exc, watch))
            return
        self._unsupported_logged.add(watch.target)
        log.warning(
            "target %s has no reset_status endpoint (%s): its reset watches cannot complete and are marked "
            "unsupported (open-source Feldera; docs/sidecar.md)",
            watch.target,
            _safe(exc, watch),
        )


def _safe(text: object, watch: StoredWatch) -> str:
    """Feldera's words about a watch, fit for the log: its token redacted wherever the answer repeats it."""
    return clean(text, (watch.token,))


def _error_state(exc: ApiError) -> str | None:
    if (exc.status == 400 and exc.error_code == "NotSupported") or (
        exc.status == 404 and exc.error_code != "UnknownPipelineName"
    ):
        return "unsupported"
    if exc.status == 400 or (exc.status == 404 and exc.error_code == "UnknownPipelineName"):
        return "invalid"
    if exc.status == 410:
        return "expired"
    return None


def _excerpt(body: object) -> str:
    text = body if isinstance(body, str) else json.dumps(body, default=str)
    if len(text) > _LOGGED_BODY_CHARS:
        return f"{text[:_LOGGED_BODY_CHARS]!r}... ({len(text)} characters)"
    return repr(text)


def _report(watch: StoredWatch, now: float) -> WatchReport:
    return WatchReport(
        name=watch.name,
        pipeline=watch.pipeline,
        status=watch.status,
        registered_at=watch.registered_at,
        age=max(now - watch.registered_at, 0.0),
        last_checked=watch.last_checked,
        finished_at=watch.finished_at,
    )


def describe(watches: Iterable[StoredWatch], now: float) -> list[dict[str, object]]:
    """JSON-ready listing for the HTTP API (tokens are not echoed)."""
    return [
        {
            "name": w.name,
            "target": w.target,
            "pipeline": w.pipeline,
            "status": w.status,
            "registered_at": w.registered_at,
            "age_seconds": max(now - w.registered_at, 0.0),
            "last_checked": w.last_checked,
            "finished_at": w.finished_at,
        }
        for w in watches
    ]
