"""Optuna storages and studies: open, check, and recover trials orphaned by a killed process."""

from __future__ import annotations

import logging
import math
import os
import socket
import time
import warnings
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, TypeVar, cast

import optuna
from optuna.storages import BaseStorage, RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState

from jointopt.errors import StorageLost, UserError, clip, mask_secrets
from jointopt.study import Study

__all__ = ["check_storage", "claim_trials", "note_created", "open_storage", "open_study",
           "recover_orphans", "trial_id", "worker_id", "worker_seed", "WORKER_ATTR",
           "storage_description", "is_storage_error", "with_storage_retry"]

log = logging.getLogger(__name__)
WORKER_ATTR = "jointopt:worker"
CREATED_BY = "created_by"


def _proc_start(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return "?"


def worker_id() -> str:
    """host:pid:start-time of this process (the start time guards against pid reuse)."""
    pid = os.getpid()
    return f"{socket.gethostname()}:{pid}:{_proc_start(pid)}"


def _alive(worker: str) -> bool | None:
    """Whether the process named by ``worker`` runs; None when it is on another host."""
    try:
        host, pid_s, start = worker.rsplit(":", 2)
        pid = int(pid_s)
    except ValueError:
        return False
    if host != socket.gethostname():
        return None
    if not Path(f"/proc/{pid}").exists():
        return False
    return _proc_start(pid) == start


def storage_description(url: str, study: Study | None = None) -> str:
    """The URL without credentials (``user:***@``, ``password=***``), for messages.

    With ``study``, a URL read from ``env:VAR`` is named by its variable, and echoed (masked)
    only when it parses as a URL: a value that does not is never printed, since there is no
    telling where its secret sits.
    """
    spec = study.search.storage if study is not None else None
    if not spec or not spec.startswith("env:"):
        return mask_secrets(url)
    try:
        from sqlalchemy.engine import make_url

        make_url(url)
    except Exception:  # noqa: BLE001  (any parse failure)
        return f"{spec} (its value is not a URL)"
    return f"{spec} = {mask_secrets(url)}"


#: Seconds libpq waits for one connection attempt (per host address) before giving up.
CONNECT_TIMEOUT = 5


def _missing_study_storage(study: Study, url: str) -> UserError:
    return UserError(f"{study.path}: search.storage={storage_description(url, study)!r}: holds no "
                     f"study yet; run jointopt search {study.path} first")


def _check_readable(study: Study, url: str, engine: dict[str, Any], *,
                    need_study: bool = True) -> None:
    """Refuse, without creating anything, a storage that cannot be reached or (``need_study``)
    has no Optuna schema yet.

    A read command (pareto, report, export, dashboard) must not leave an empty ``optuna.db`` or
    fresh tables behind when the study was never searched.
    """
    if url.startswith("journal:"):
        path = Path(url[len("journal:"):])
        if not need_study and not path.exists():
            if not path.parent.is_dir():
                raise FileNotFoundError(f"folder {path.parent} does not exist")
            return
        if not path.is_file():
            raise _missing_study_storage(study, url)
        return
    if url.startswith("sqlite:///"):
        path = Path(url[len("sqlite:///"):])
        if not need_study and not path.exists():
            if path.parent != study.output and not path.parent.is_dir():
                raise FileNotFoundError(f"folder {path.parent} does not exist")
            return
        if not path.is_file():
            raise _missing_study_storage(study, url)
        import sqlite3

        try:
            conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
            try:
                tables = {r[0] for r in conn.execute(
                    "SELECT name FROM sqlite_master WHERE type='table'")}
            finally:
                conn.close()
        except sqlite3.DatabaseError as e:
            raise UserError(f"{study.path}: search.storage={storage_description(url, study)!r}: "
                            f"not an SQLite database ({clip(str(e), 80)})") from None
        if need_study and "studies" not in tables:
            raise _missing_study_storage(study, url)
        return
    import sqlalchemy

    eng = sqlalchemy.create_engine(url, **engine)
    try:
        with eng.connect() as sa_conn:
            if need_study and not sqlalchemy.inspect(sa_conn).has_table("studies"):
                raise _missing_study_storage(study, url)
    finally:
        eng.dispose()


def _engine_kwargs(url: str) -> dict[str, Any]:
    engine: dict[str, Any] = {"pool_pre_ping": True}
    if url.startswith("postgresql") and "connect_timeout=" not in url:
        engine["connect_args"] = {"connect_timeout": CONNECT_TIMEOUT}
    return engine


def _cannot_open(study: Study, url: str, e: Exception) -> UserError:
    first = (str(e).strip().splitlines() or [type(e).__name__])[0]
    return UserError(f"{study.path}: search.storage={storage_description(url, study)!r}: "
                     f"cannot open storage: {clip(first, 300)}")


def check_storage(study: Study, *, url: str | None = None) -> None:
    """Whether the study's storage can be reached, creating nothing (no file, no table): a
    search checks it before it generates data or trains anything."""
    url = url or study.storage_url
    try:
        _check_readable(study, url, _engine_kwargs(url), need_study=False)
    except UserError:
        raise
    except Exception as e:  # noqa: BLE001  (driver errors vary; all mean "cannot use it")
        raise _cannot_open(study, url, e) from None


def open_storage(study: Study, *, url: str | None = None, create: bool = True) -> BaseStorage:
    """The study's storage, with heartbeats on SQL; unreachable storage is a one-line error.

    ``create=False`` (read commands) never creates a file, a folder or a table: a storage
    without a study is an error that says to run ``jointopt search`` first.
    """
    url = url or study.storage_url
    spec = study.search
    try:
        engine = _engine_kwargs(url)
        if not create:
            _check_readable(study, url, engine)
        if url.startswith("journal:"):
            from optuna.storages import JournalStorage
            from optuna.storages.journal import JournalFileBackend

            path = Path(url[len("journal:"):])
            if not path.parent.is_dir():
                raise FileNotFoundError(f"folder {path.parent} does not exist")
            return JournalStorage(JournalFileBackend(str(path)))
        if url.startswith("sqlite:///"):
            folder = Path(url[len("sqlite:///"):]).parent
            if folder == study.output and create:
                folder.mkdir(parents=True, exist_ok=True)
            elif not folder.is_dir():
                raise FileNotFoundError(f"folder {folder} does not exist")
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
        return _rdb_storage(url, engine, spec, create=create)
    except UserError:
        raise
    except Exception as e:  # noqa: BLE001  (driver errors vary; all mean "cannot use it")
        raise _cannot_open(study, url, e) from None


def _rdb_storage(url: str, engine: dict[str, Any], spec: Any, *, create: bool = True
                 ) -> RDBStorage:
    """RDBStorage, retried a few times when workers create the schema at the same moment.

    PostgreSQL's CREATE TABLE is not safe against a concurrent one (the loser gets a unique
    violation on its catalog); the retry then finds the tables there.
    """
    from sqlalchemy.exc import IntegrityError, ProgrammingError

    for attempt in range(6):
        try:
            return RDBStorage(
                url, engine_kwargs=engine, heartbeat_interval=spec.heartbeat_interval,
                grace_period=spec.grace_period,
                heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(
                    max_retry=spec.max_retry), skip_table_creation=not create)
        except (IntegrityError, ProgrammingError):
            if attempt == 5:
                raise
            time.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")


def trial_id(storage: BaseStorage, study_name: str, number: int) -> int:
    """The storage's id of trial ``number`` of the study ``study_name``, through Optuna's public
    storage API (what writes to a trial's system attrs need; Optuna keeps its own copy of the id
    in private attributes)."""
    return storage.get_trial_id_from_study_id_trial_number(
        storage.get_study_id_from_name(study_name), number)


def claim_trials(sampler: optuna.samplers.BaseSampler, storage: BaseStorage
                 ) -> optuna.samplers.BaseSampler:
    """Make each trial this process starts carry this process's name as its owner.

    On an SQL storage a new trial is created already named (:func:`_name_at_birth`), so no
    kill or outage can leave one of this process's trials without an owner; on other storages,
    and for a queued trial taken from the queue, the sampler's ``before_trial`` hook names it:
    that runs right after the storage hands the trial over and before any sampling, so a
    process killed while sampling still leaves a trial whose owner can be checked. ``storage``
    is the one the study was opened on (:func:`open_storage`).
    """
    me = worker_id()
    inner = sampler.before_trial
    _name_at_birth(storage, me)

    def before_trial(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if trial.system_attrs.get(WORKER_ATTR) != me:
            # ``study`` may be a pruner's filtered view of the study; it keeps ``study_name``.
            storage.set_trial_system_attr(trial_id(storage, study.study_name, trial.number),
                                          WORKER_ATTR, me)
        inner(study, trial)

    sampler.before_trial = before_trial  # type: ignore[method-assign]
    return sampler


#: Numbers of the trials this process created, by study name (the Ray backend's: its storage
#: is not wrapped, see :func:`_name_at_birth`). The storage can create a trial and then go away
#: before the trial is named as this process's (WORKER_ATTR); such a trial has no owner in the
#: storage, but this process knows it is its own.
_CREATED: dict[str, set[int]] = {}


#: Storage ids of the queued trials this process took (WAITING to RUNNING), by storage URL: the
#: storage can go away between taking a trial and naming it.
_CREATED_IDS: dict[str, set[int]] = {}


def note_created(study_name: str, number: int) -> None:
    """Record that this process created trial ``number`` (call before naming its owner)."""
    _CREATED.setdefault(study_name, set()).add(number)


def _name_at_birth(storage: BaseStorage, me: str) -> None:
    """Make an SQL ``storage`` create each new trial with ``me`` as its owner, in the same
    transaction, and name each queued trial it hands out (WAITING to RUNNING) right after,
    recording its id first: a kill or an outage between the storage's creating a trial and
    Optuna's handing it to the sampler cannot leave a trial of this process without an owner.

    Only the Optuna backend's storage is wrapped: Ray pickles its searcher with the storage,
    and these closures do not pickle. Optuna's cache in front of an SQL storage creates trials
    through the private ``_create_new_trial``, which is wrapped too.
    """
    url = getattr(storage, "url", None)
    if not isinstance(url, str) or getattr(storage, "_jointopt_names_trials", False):
        return
    ids = _CREATED_IDS.setdefault(url, set())
    create, set_state = storage.create_new_trial, storage.set_trial_state_values
    create_frozen = getattr(storage, "_create_new_trial", None)

    def named(template: Any) -> Any:
        if template is not None:  # a trial Optuna copies (enqueue, add_trial): not a new run
            return template
        return optuna.trial.FrozenTrial(
            number=-1, state=TrialState.RUNNING, value=None, values=None,
            datetime_start=datetime.now(), datetime_complete=None, params={},
            distributions={}, user_attrs={}, system_attrs={WORKER_ATTR: me},
            intermediate_values={}, trial_id=-1)

    def create_new_trial(study_id: int, template_trial: Any = None) -> int:
        return create(study_id, named(template_trial))

    def _create_new_trial(study_id: int, template_trial: Any = None) -> Any:
        return create_frozen(study_id, named(template_trial))  # type: ignore[misc]

    def set_trial_state_values(trial_id: int, state: TrialState,
                               values: Any = None) -> bool:
        taken = set_state(trial_id, state, values)
        if taken and state == TrialState.RUNNING:
            ids.add(trial_id)
            storage.set_trial_system_attr(trial_id, WORKER_ATTR, me)
        return taken

    storage.create_new_trial = create_new_trial  # type: ignore[method-assign]
    if create_frozen is not None:
        storage._create_new_trial = _create_new_trial  # type: ignore[attr-defined]
    storage.set_trial_state_values = set_trial_state_values  # type: ignore[method-assign]
    storage._jointopt_names_trials = True  # type: ignore[attr-defined]


def _created_here(storage: BaseStorage, study_name: str, number: int) -> bool:
    """Whether this process created (Ray backend) or took from the queue trial ``number``."""
    if number in _CREATED.get(study_name, ()):
        return True
    ids = _CREATED_IDS.get(getattr(storage, "url", None) or "", set())
    return bool(ids) and trial_id(storage, study_name, number) in ids


def worker_seed(ostudy: optuna.Study, seed: int | None) -> int | None:
    """The sampler seed of this process: the study's seed for the process that created the
    study (a single-process search is reproducible), mixed with the worker id for every other
    worker, so concurrent workers do not all draw the same configs."""
    if seed is None or ostudy.user_attrs.get(CREATED_BY) == worker_id():
        return seed
    import hashlib

    digest = hashlib.sha256(f"{seed}:{worker_id()}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def _directions(study: Study) -> list[Literal["maximize", "minimize"]]:
    # Objective.__post_init__ admits only these two strings.
    return [cast(Literal["maximize", "minimize"], o.direction) for o in study.search.objectives]


def _keys(study: Study) -> list[str]:
    return [o.key for o in study.search.objectives]


def open_study(study: Study, storage: BaseStorage, *, create: bool = True,
               sampler: optuna.samplers.BaseSampler | None = None) -> optuna.Study:
    """Load the Optuna study, or create it (with the baseline queued as its first trial).

    A stored study with the same name but other objectives is an error, and is left untouched.
    """
    name = study.search.study_name
    try:
        ostudy = optuna.load_study(study_name=name, storage=storage, sampler=sampler)
    except KeyError:
        if not create:
            raise UserError(f"{study.path}: search.study_name={name!r}: no such study in "
                            f"{storage_description(study.storage_url, study)}; run jointopt search "
                            "first") from None
        try:
            ostudy = optuna.create_study(study_name=name, storage=storage, sampler=sampler,
                                         directions=_directions(study))
        except optuna.exceptions.DuplicatedStudyError:
            return open_study(study, storage, create=False, sampler=sampler)
        ostudy.set_user_attr("study_file", str(study.path))
        # optuna-dashboard shows each objective by its metric name, not "Objective 0".
        ostudy.set_metric_names(_keys(study))
        if study.search.constraints:
            ostudy.set_user_attr("constraints", [c.name for c in study.search.constraints])
        ostudy.enqueue_trial(study.space.params_from_config(study.space.max_config),
                             user_attrs={"baseline": True})
        for c in study.search.seed_configs:
            from jointopt.space import JointConfig

            ostudy.enqueue_trial(study.space.params_from_config(JointConfig.from_dict(c)),
                                 user_attrs={"seed_config": True})
        # Last: a worker that loads the study sees it complete (baseline queued) or waits.
        ostudy.set_user_attr("objectives", _keys(study))
        ostudy.set_user_attr(CREATED_BY, worker_id())
        return ostudy
    stored = ostudy.user_attrs.get("objectives")
    deadline = time.monotonic() + 15
    while stored is None and time.monotonic() < deadline:  # its creator is still setting it up
        time.sleep(0.2)
        stored = ostudy.user_attrs.get("objectives")
    dirs = [d.name.lower() for d in ostudy.directions]
    if stored != _keys(study) or dirs != _directions(study):
        raise UserError(
            f"{study.path}: search.study_name={name!r}: exists in the storage with objectives "
            f"{list(zip(stored or [], dirs, strict=False))}, this study asks for "
            f"{list(zip(_keys(study), _directions(study), strict=True))}; use another study_name")
    return ostudy


def recover_orphans(ostudy: optuna.Study, storage: BaseStorage, *, also: tuple[str, ...] = (),
                    grace: float = 60.0) -> list[int]:
    """Fail and re-queue RUNNING trials whose process is gone; returns their numbers.

    Heartbeats (SQL storage, inside ``optimize``) catch stale trials after a grace period and
    on any host; this catches, at once and on every storage, trials of a dead process on this
    host, so a restarted search never waits for them. ``also`` names live workers whose
    RUNNING trials are known to be orphaned (this process, after its storage came back).
    ``storage`` is the one ``ostudy`` was opened on (:func:`open_storage`).
    """
    recovered = []
    for t in ostudy.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        owner = t.system_attrs.get(WORKER_ATTR)
        # Created by an earlier pass of this process and cut off before it was named (an
        # outage): an orphan, since a pass starts only after the one before it ended.
        unnamed_here = owner is None and _created_here(storage, ostudy.study_name, t.number)
        if owner is None and not unnamed_here:
            # A worker names itself in the sampler's before_trial hook (Optuna backend,
            # claim_trials) or once the params are drawn (Ray backend); until then its trial
            # has no owner. Only one that stayed unnamed for a grace period is dead.
            started = t.datetime_start
            age = (datetime.now() - started).total_seconds() if started else math.inf
            if age < grace:
                continue
        alive = _alive(owner) if isinstance(owner, str) else False
        if owner in also or unnamed_here:
            alive = False
        if alive is None or alive:
            continue
        try:
            storage.set_trial_state_values(trial_id(storage, ostudy.study_name, t.number),
                                           TrialState.FAIL)
        except RuntimeError:  # finished meanwhile
            continue
        user_attrs = {k: v for k, v in t.user_attrs.items() if k in ("baseline",)}
        user_attrs["retry_of"] = t.user_attrs.get("retry_of", t.number)
        ostudy.enqueue_trial(t.params, user_attrs=user_attrs, skip_if_exists=False)
        recovered.append(t.number)
        log.warning("trial %d was left RUNNING by a dead process; failed and queued again",
                    t.number)
    return recovered


def is_storage_error(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) says the storage cannot be reached or written."""
    from sqlalchemy.exc import DBAPIError, DisconnectionError

    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, (DBAPIError, DisconnectionError,
                          optuna.exceptions.StorageInternalError)):
            return True
        e = e.__cause__ or e.__context__
    return False


T = TypeVar("T")


def with_storage_retry(study: Study, run: Callable[[], T], *, sleep: Callable[[float], None]
                       = time.sleep) -> T:
    """Call ``run()`` (one search pass) again whenever it stops because the storage went away.

    Retries back off from 1 s, doubling up to 15 s, for at most ``search.storage_retry_seconds``
    from the first failure in a row; then :class:`StorageLost` ends the search with one line.
    Trials this process left RUNNING when its pass broke off are failed and queued again by the
    next pass (``recover_orphans(also=(this worker,))``), so no trial is lost or duplicated.
    """
    budget = study.search.storage_retry_seconds
    first: float | None = None
    delay = 1.0
    while True:
        try:
            return run()
        except UserError as e:
            # open_storage's "cannot open storage" while retrying; at start it is the user's
            if first is None or "cannot open storage" not in str(e):
                raise
            why = str(e).rsplit(": ", 1)[-1]
        except Exception as e:  # noqa: BLE001  (storage errors come wrapped in many types)
            if not is_storage_error(e):
                raise
            why = (str(e).strip().splitlines() or [type(e).__name__])[0]
        now = time.monotonic()
        first = now if first is None else first
        left = budget - (now - first)
        if left <= 0:
            raise StorageLost(
                f"{study.path}: search.storage={storage_description(study.storage_url, study)!r}: "
                f"unreachable for {now - first:.0f} s ({why[:160]}); stopped. Finished trials "
                "are stored; run jointopt search again to resume") from None
        log.warning("storage unreachable (%s); retrying in %.0f s", why[:160], min(delay, left))
        sleep(min(delay, left))
        delay = min(delay * 2, 15.0)
